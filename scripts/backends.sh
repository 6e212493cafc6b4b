#!/usr/bin/env bash
# Builds ggml's run-time backends (shared libraries loaded by bin/box at
# start) with CMake from the same llama.cpp/ggml tree that box links
# statically: the github.com/ollama/ollama module.
#
#   scripts/backends.sh [all | vulkan | cuda | cpu-variants]...
#
# What it cannot build on this host it skips, and says why (no nvcc: no
# CUDA), without failing; it fails when a build that could start breaks.
#
# Environment:
#   BOX_GGML_SRC   a tree prepared by an earlier run (see "prepare" below), for
#                  hosts without Go (scripts/gpu-check.sh); default: the module
#                  directory that `go list` names, copied and prepared
#   BOX_LIB_DIR    where the libraries go (default lib/box, beside bin/box)
#   BOX_CMAKE_CACHE  build directories (default ~/.cache/box/cmake), one per
#                  module version and flags, so a second build is seconds
#   JOBS           parallel compile jobs (default 2)
#   CUDA_ARCH      CMAKE_CUDA_ARCHITECTURES (default native)
#   BOX_BACKENDS_STRICT=1  fail when a requested backend cannot be built
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
here=$root/scripts/backends

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(all)
want_vulkan=0 want_cuda=0 want_cpu=0 prepare_only=0
for w in "${want[@]}"; do
	case $w in
	all) want_vulkan=1 want_cuda=1 ;;
	vulkan) want_vulkan=1 ;;
	cuda) want_cuda=1 ;;
	cpu-variants) want_cpu=1 ;;
	prepare) prepare_only=1 ;;
	*) echo "backends: unknown backend $w (all, vulkan, cuda, cpu-variants, prepare)" >&2; exit 2 ;;
	esac
done

JOBS=${JOBS:-2}
LIB=${BOX_LIB_DIR:-$root/lib/box}
CACHE=${BOX_CMAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/box/cmake}
say() { echo "backends: $*"; }
skipped=()
skip() { skipped+=("$1"); say "SKIPPED $1"; }

# --- the source tree --------------------------------------------------------
# The module cache is read-only, and its ggml-vulkan needs two fixes: the
# glslc feature probes it does not ship (a missing probe reads as
# "supported" and turns on shaders old glslc cannot compile) and a header
# for VK_EXT_layer_settings on pre-1.3.261 Vulkan headers. So the build runs
# on a prepared copy of the parts CMake reads (the root CMakeLists.txt and
# ml/backend/ggml/ggml), keyed by the module version and these fixes.
fixes_hash=$(cat "$here"/ggml-vulkan-box.cmake "$here"/vk-compat.h "$here"/feature-tests/*.comp | sha256sum | cut -c1-10)
if [ -n "${BOX_GGML_SRC:-}" ]; then
	src=$BOX_GGML_SRC
	ver=$(cat "$src/.box-version" 2>/dev/null || echo unknown)
else
	mod=$(go list -m -f '{{.Dir}}' github.com/ollama/ollama 2>/dev/null || true)
	[ -n "$mod" ] && [ -d "$mod/ml/backend/ggml/ggml/src" ] || { say "cannot find github.com/ollama/ollama in the module cache (go mod download?)" >&2; exit 1; }
	ver=$(go list -m -f '{{.Version}}' github.com/ollama/ollama)
	src=${CACHE%/cmake}/src/ollama-$ver-$fixes_hash
	if [ ! -f "$src/.box-version" ]; then
		tmp=$src.tmp.$$
		rm -rf "$tmp"
		mkdir -p "$tmp/ml/backend/ggml"
		cp "$mod/CMakeLists.txt" "$tmp/"
		cp -r "$mod/ml/backend/ggml/ggml" "$tmp/ml/backend/ggml/"
		chmod -R u+w "$tmp"
		vk=$tmp/ml/backend/ggml/ggml/src/ggml-vulkan
		mkdir -p "$vk/vulkan-shaders/feature-tests"
		cp "$here"/feature-tests/*.comp "$vk/vulkan-shaders/feature-tests/"
		cp "$here/vk-compat.h" "$vk/box-vk-compat.h"
		{ echo; cat "$here/ggml-vulkan-box.cmake"; } >>"$vk/CMakeLists.txt"
		echo "$ver" >"$tmp/.box-version"
		rm -rf "$src"
		mv "$tmp" "$src"
	fi
fi
say "source $src (ollama $ver)"
if [ $prepare_only = 1 ]; then
	echo "$src"
	exit 0
fi

if ! command -v cmake >/dev/null; then
	say "SKIPPED all backends: no cmake (apt-get install cmake ninja-build)"
	[ "${BOX_BACKENDS_STRICT:-0}" = 1 ] && exit 1
	exit 0
fi
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)

# --- what this host can build -----------------------------------------------
args=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON "-DCMAKE_INSTALL_RPATH=\$ORIGIN" -DGGML_CCACHE=OFF)
# One configuration per host (everything it can build, whatever this run
# asked for), so every library in lib/box comes from one build dir and
# binds to the same libggml-base.so.
can_vulkan=0 can_cuda=0 why_vulkan="" why_cuda=""
if [ ! -d "$src/ml/backend/ggml/ggml/src/ggml-vulkan" ]; then
	why_vulkan="the source tree has no ggml-vulkan"
elif ! command -v glslc >/dev/null; then
	why_vulkan="no glslc (apt-get install glslc libvulkan-dev spirv-headers)"
elif [ ! -f /usr/include/vulkan/vulkan.h ] && [ -z "${VULKAN_SDK:-}" ]; then
	why_vulkan="no Vulkan headers (apt-get install libvulkan-dev)"
else
	can_vulkan=1
fi
nvcc=${CUDACXX:-$(command -v nvcc || true)}
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
if [ -z "$nvcc" ]; then
	why_cuda="no nvcc (install the CUDA toolkit, or set CUDACXX)"
else
	can_cuda=1
fi
[ $want_vulkan = 1 ] && [ $can_vulkan = 0 ] && skip "Vulkan: $why_vulkan"
[ $want_cuda = 1 ] && [ $can_cuda = 0 ] && skip "CUDA: $why_cuda"
# Keep out of the configuration what cannot be built, so a missing tool
# never fails the configure step.
# (The root CMakeLists adds ggml-vulkan itself when it finds Vulkan.)
[ $can_vulkan = 1 ] || args+=(-DCMAKE_DISABLE_FIND_PACKAGE_Vulkan=ON)
if [ $can_cuda = 1 ]; then
	args+=("-DCMAKE_CUDA_COMPILER=$nvcc" "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-native}")
else
	args+=(-DCMAKE_CUDA_COMPILER=)
fi
args+=(-DCMAKE_HIP_COMPILER=)

targets=(ggml-base)
[ $want_vulkan = 1 ] && [ $can_vulkan = 1 ] && targets+=(ggml-vulkan)
[ $want_cuda = 1 ] && [ $can_cuda = 1 ] && targets+=(ggml-cuda)
if [ $want_cpu = 1 ]; then
	case $(uname -m) in
	x86_64) targets+=(ggml-cpu-x64 ggml-cpu-sse42 ggml-cpu-sandybridge ggml-cpu-haswell ggml-cpu-skylakex ggml-cpu-icelake ggml-cpu-alderlake) ;;
	*) skip "CPU variants: only built for x86_64 here" ;;
	esac
fi
if [ ${#targets[@]} = 1 ]; then
	say "nothing to build"
	[ "${BOX_BACKENDS_STRICT:-0}" = 1 ] && [ ${#skipped[@]} -gt 0 ] && exit 1
	exit 0
fi

cc_id=$({ cc --version 2>/dev/null | head -1; c++ --version 2>/dev/null | head -1; [ -n "$nvcc" ] && "$nvcc" --version | tail -1; cmake --version | head -1; } | sha256sum | cut -c1-8)
flags_hash=$(printf '%s\n' "${args[@]}" "${gen[@]}" "$cc_id" "$fixes_hash" | sha256sum | cut -c1-10)
build=$CACHE/$ver-$flags_hash
mkdir -p "$build"

t0=$(date +%s)
if [ ! -f "$build/.box-configured" ]; then
	say "configure $build"
	rm -f "$build/CMakeCache.txt"
	cmake -S "$src" -B "$build" "${gen[@]}" "${args[@]}" >"$build/configure.log" 2>&1 || { tail -40 "$build/configure.log"; say "configure failed (log: $build/configure.log)" >&2; exit 1; }
	touch "$build/.box-configured"
	grep -E 'GLSLC_SUPPORT|supported by glslc|CUDA compiler|Vulkan found|Including (CPU|Vulkan|CUDA)' "$build/configure.log" | sed 's/^/backends:   /' || true
fi
say "build ${targets[*]} (-j$JOBS)"
cmake --build "$build" --target "${targets[@]}" -j "$JOBS" >"$build/build.log" 2>&1 || { tail -40 "$build/build.log"; say "build failed (log: $build/build.log)" >&2; exit 1; }
t1=$(date +%s)

out=$build/lib/ollama
mkdir -p "$LIB"
cp -a "$out"/libggml-base.so* "$LIB/"
for t in "${targets[@]:1}"; do
	cp -a "$out/lib$t.so" "$LIB/"
	say "built $LIB/lib$t.so ($(du -h "$out/lib$t.so" | cut -f1))"
done
say "done in $((t1 - t0)) s; libraries in $LIB"
for s in "${skipped[@]}"; do say "skipped: $s"; done
if [ "${BOX_BACKENDS_STRICT:-0}" = 1 ] && [ ${#skipped[@]} -gt 0 ]; then exit 1; fi
exit 0
