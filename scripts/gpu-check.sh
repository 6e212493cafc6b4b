#!/usr/bin/env bash
# The CUDA check, as one script for a lent NVIDIA machine (nvcc, CMake,
# ninja, many cores, but no Go). Two steps:
#
#   scripts/gpu-check.sh pack   here, with Go: writes build/gpu-check/ (a
#                               stripped box, the GPU test binary, the
#                               prepared ggml tree as a tarball); ~45 MB
#   scripts/gpu-check.sh        there: builds libggml-cuda.so for the local
#                               GPU only (CUDA_ARCH, default native) and
#                               runs the checks; one summary line each
#
# With the device tool: run(command="scripts/gpu-check.sh", carry=["build/gpu-check"]).
# Without nvcc or NVML (a CPU host) it says what it skipped, and runs the
# device-generic checks on the CPU as a dry run of the script itself.
#
# The checks (gputest, built with -tags gpu; docs/gpu.md):
#   probe      box probe: the CUDA device's memory and NVML's agree within 1%
#   output     a worker on the GPU serves a head over loopback; the greedy
#              output equals the CPU's (within greedy tolerance)
#   kill       kill -9 of the head: NVML lists no compute process of the
#              worker and used memory is back to the baseline within 2 s
#   kill-rss   the same, by box's count: 0 bytes bound, compute gone, RSS back
#   quota      --max-memory refuses an allocation past it on the device
#   leakcheck  box leakcheck --restarts 10 on GPU workers passes, NVML judged
#   fault      the leak fault (compute processes that keep their memory) is
#              caught, NVML's figure above its baseline
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/build/gpu-check

if [ "${1:-}" = pack ]; then
	set -e
	eval "$(make -s env)"
	mkdir -p "$out"
	go build -ldflags='-s -w' -o "$out/box" ./cmd/box
	go test -c -tags gpu -ldflags='-s -w' -o "$out/gputest.test" ./gputest
	src=$(scripts/backends.sh prepare | tail -1)
	# What CMake needs for ggml-base and ggml-cuda (not the Vulkan shaders).
	tar -C "$src" --exclude=ml/backend/ggml/ggml/src/ggml-vulkan --exclude=ml/backend/ggml/ggml/src/ggml-metal --exclude='*.go' \
		-czf "$out/ggml-src.tar.gz" CMakeLists.txt .box-version ml
	du -sh "$out"/box "$out"/gputest.test "$out"/ggml-src.tar.gz
	echo "gpu-check: packed; carry build/gpu-check and run scripts/gpu-check.sh"
	exit 0
fi

for f in box gputest.test ggml-src.tar.gz; do
	[ -e "$out/$f" ] || { echo "gpu-check: $out/$f missing (run scripts/gpu-check.sh pack where Go is)"; exit 2; }
done
summary=()
line() { summary+=("$1"); echo "gpu-check: $1"; }
date -u "+gpu-check: %Y-%m-%d %H:%M:%S UTC on $(hostname), $(nproc) cores"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader | sed 's/^/gpu-check: GPU /'

# --- build libggml-cuda.so ----------------------------------------------------
lib=$out/lib
mkdir -p "$lib" "$out/src"
if [ ! -f "$out/src/.extracted" ] || [ "$out/ggml-src.tar.gz" -nt "$out/src/.extracted" ]; then
	rm -rf "$out/src" && mkdir -p "$out/src"
	tar -C "$out/src" -xzf "$out/ggml-src.tar.gz" && touch "$out/src/.extracted"
fi
nvcc=${CUDACXX:-$(command -v nvcc || true)}
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
gpu=0
if [ -n "$nvcc" ]; then
	t0=$(date +%s)
	if BOX_GGML_SRC=$out/src BOX_LIB_DIR=$lib BOX_CMAKE_CACHE=$out/cmake CUDACXX=$nvcc JOBS=${JOBS:-$(nproc)} \
		CUDA_ARCH=${CUDA_ARCH:-native} scripts/backends.sh cuda >"$out/build.log" 2>&1 && [ -f "$lib/libggml-cuda.so" ]; then
		line "build: PASS libggml-cuda.so ($(du -h "$lib/libggml-cuda.so" | cut -f1)) in $(($(date +%s) - t0)) s, arch ${CUDA_ARCH:-native}, $("$nvcc" --version | tail -1)"
		gpu=1
	else
		tail -30 "$out/build.log"
		line "build: FAIL after $(($(date +%s) - t0)) s (log: $out/build.log)"
	fi
	# The CUDA runtime and cuBLAS beside nvcc, for the loader.
	export LD_LIBRARY_PATH="$(dirname "$(dirname "$nvcc")")/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
	line "build: SKIP no nvcc (no CUDA toolkit on this host)"
fi

export BOX_BACKENDS=$lib BOX_BIN=$out/box MESA_SHADER_CACHE_DIR=$out/mesa
"$out/box" probe >"$out/probe.txt" 2>&1
sed 's/^/gpu-check:   /' "$out/probe.txt"
nvml=0
grep -q 'NVML not available\|NVML: not available' "$out/probe.txt" || nvml=1
if [ $gpu = 1 ] && ! grep -q 'CUDA0' "$out/probe.txt"; then
	line "probe: FAIL libggml-cuda.so built but box lists no CUDA0 (see the skip reason above)"
	gpu=0
fi

# --- the checks -------------------------------------------------------------
declare -A test_of=([probe]=TestNVMLProbeAgrees [output]=TestNVMLWorkerMatchesCPU [kill]=TestNVMLKilledHeadReleases
	[kill-rss]=TestKilledHeadFreesVulkanWorker [quota]=TestQuotaRefusesOnVulkan [leakcheck]=TestNVMLLeakcheckPasses
	[fault]=TestNVMLLeakcheckCatchesFault)
order=(probe output kill kill-rss quota leakcheck fault)
run_checks() { # checks...
	local re
	re="^($(for c in "$@"; do printf '%s|' "${test_of[$c]}"; done | sed 's/|$//'))\$"
	"$out/gputest.test" -test.run "$re" -test.v -test.timeout 20m >"$out/test.log" 2>&1
	for c in "$@"; do
		local t=${test_of[$c]} res detail
		res=$(grep -E "^--- (PASS|FAIL|SKIP): $t " "$out/test.log" | head -1 | sed -E 's/^--- ([A-Z]+): [^ ]+ \(([^)]*)\).*/\1 (\2)/')
		detail=$(awk -v t="$t" '$0 ~ "^=== RUN +"t"$" {on=1; next} /^(=== RUN|--- )/ {on=0} on' "$out/test.log" | grep -E 'CHECK|vulkan_test.go|nvml_test.go' | tail -1 | sed -E 's/^ *[a-z_]+_test.go:[0-9]+: (CHECK [a-z-]+: )?//' | cut -c1-220)
		line "$c${label:-}: ${res:-FAIL (did not run; see $out/test.log)} $detail"
	done
}
if [ $gpu = 1 ] && [ $nvml = 1 ]; then
	BOX_GPU_DEVICE=CUDA0 BOX_GPU_LIB=libggml-cuda.so run_checks "${order[@]}"
else
	why="no CUDA device"
	[ $gpu = 1 ] && why="no NVML"
	for c in "${order[@]}"; do line "$c: SKIP ($why)"; done
	echo "gpu-check: dry run of the device-generic checks on the CPU (no GPU here)"
	label=" [CPU dry run]" BOX_GPU_DRY_CPU=1 run_checks output kill-rss quota
fi
echo "gpu-check: summary"
printf '  %s\n' "${summary[@]}"
grep -q ': FAIL' <(printf '%s\n' "${summary[@]}") && exit 1
exit 0
