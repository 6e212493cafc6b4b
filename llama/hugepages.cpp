// Moving a loaded model's host weights onto transparent huge pages.
//
// A decode reads every weight once per token. On 4 KiB pages that walk
// misses the TLB all the time; on 2 MiB pages it hardly does (measured: +8%
// tg on a 1b model, docs/benchmarks.md). llama.cpp allocates host weights with posix_memalign or
// maps the file, neither of which asks for huge pages, and it has no hook to
// choose the memory. So after the load each hot 2 MiB-aligned span of a host
// weight buffer is copied, a chunk at a time, into fresh memory advised
// MADV_HUGEPAGE, and that memory is moved over the old pages with mremap.
// The weights keep their addresses and contents, the buffers keep their
// owners (ggml frees or llama.cpp unmaps them as before: munmap takes
// whatever pages lie in the range), and at most one chunk of extra memory is
// held at once. The Go side (hugepages.go) drives the chunks.

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"
#include "hugepages.h"

// Declared by llama.cpp's src/llama-model.h, which is not a public header.
const std::vector<std::pair<std::string, ggml_tensor *>> & llama_internal_get_tensor_map(const llama_model * model);

namespace {

const uintptr_t kHuge = 2u << 20;

uintptr_t down(uintptr_t p) { return p & ~(kHuge - 1); }
uintptr_t up(uintptr_t p) { return (p + kHuge - 1) & ~(kHuge - 1); }

// kindOf says what memory a buffer holds: 1 anonymous pages from the CPU
// backend's allocator (its own type, or the repacking type built on it),
// 2 llama.cpp's read-only mapping of the model file, 0 anything else (device
// memory, remote buffers), which is never touched.
int kindOf(ggml_backend_buffer_t b) {
    ggml_backend_buffer_type_t t = ggml_backend_buffer_get_type(b);
    if (t == ggml_backend_cpu_buffer_type()) return BOX_HUGE_ANON;
    const char *name = ggml_backend_buft_name(t);
    if (strcmp(name, "CPU_REPACK") == 0) return BOX_HUGE_ANON;
    if (strcmp(name, "CPU_Mapped") == 0) return BOX_HUGE_MAPPED;
    return 0;
}

}  // namespace

extern "C" int box_huge_spans(const struct llama_model *m, box_huge_span *out, int cap) {
    const auto &tensors = llama_internal_get_tensor_map(m);
    // The token embeddings are read one row per token (get_rows) unless
    // the output projection shares them: then they are hot like any matrix.
    bool tied = true;
    for (const auto &nt : tensors) {
        if (nt.first == "output.weight") tied = false;
    }
    std::vector<box_huge_span> spans;
    for (const auto &nt : tensors) {
        ggml_tensor *t = nt.second;
        if (t == nullptr || t->buffer == nullptr || t->data == nullptr) continue;
        if (!tied && nt.first == "token_embd.weight") continue;
        ggml_backend_buffer_t b = t->buffer;
        if (ggml_backend_buffer_get_usage(b) != GGML_BACKEND_BUFFER_USAGE_WEIGHTS) continue;
        int kind = kindOf(b);
        if (kind == 0) continue;
        uintptr_t base = (uintptr_t)ggml_backend_buffer_get_base(b);
        uintptr_t lo = up(base), hi = down(base + ggml_backend_buffer_get_size(b));
        uintptr_t s = (uintptr_t)t->data, e = s + ggml_nbytes(t);
        // Whole huge pages around the tensor, inside its buffer: the
        // neighbours they take along are the buffer's own bytes.
        s = std::max(down(s), lo);
        e = std::min(up(e), hi);
        if (s >= e) continue;
        spans.push_back(box_huge_span{(uint64_t)s, (uint64_t)(e - s), kind});
    }
    std::sort(spans.begin(), spans.end(), [](const box_huge_span &a, const box_huge_span &b) { return a.addr < b.addr; });
    int n = 0;
    for (const auto &sp : spans) {
        if (n > 0 && out[n - 1].addr + out[n - 1].len >= sp.addr && out[n - 1].kind == sp.kind) {
            out[n - 1].len = std::max(out[n - 1].addr + out[n - 1].len, sp.addr + sp.len) - out[n - 1].addr;
            continue;
        }
        if (n == cap) return -1;
        out[n++] = sp;
    }
    return n;
}

// box_huge_move moves one chunk [addr, addr+len) (2 MiB-aligned, at most
// BOX_HUGE_CHUNK bytes, inside one buffer of the given kind) onto huge
// pages. It returns 0, or an errno with the range as it was; *lost is set
// when a failed move could not be undone and the range no longer holds the
// weights.
extern "C" int box_huge_move(uint64_t addr, uint64_t len, int kind, int *lost) {
    *lost = 0;
    int prot = kind == BOX_HUGE_MAPPED ? PROT_READ : PROT_READ | PROT_WRITE;
    size_t n = (size_t)len;
    char *src = (char *)(uintptr_t)addr;
    // Over-allocate by one huge page so an aligned start can be cut out.
    size_t span = n + kHuge;
    char *raw = (char *)mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return errno;
    char *dst = (char *)up((uintptr_t)raw);
    if (dst > raw) munmap(raw, dst - raw);
    if (raw + span > dst + n) munmap(dst + n, raw + span - (dst + n));
    if (madvise(dst, n, MADV_HUGEPAGE) != 0) {
        int e = errno;
        munmap(dst, n);
        return e;
    }
    memcpy(dst, src, n);
    if (prot != (PROT_READ | PROT_WRITE) && mprotect(dst, n, prot) != 0) {
        int e = errno;
        munmap(dst, n);
        return e;
    }
    if (mremap(dst, n, n, MREMAP_MAYMOVE | MREMAP_FIXED, src) == MAP_FAILED) {
        // The kernel may have unmapped the target before failing: put
        // anonymous memory back there and copy the weights home.
        int e = errno;
        if (mmap(src, n, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED) {
            *lost = 1;
            munmap(dst, n);
            return e;
        }
        memcpy(src, dst, n);
        mprotect(src, n, prot);
        munmap(dst, n);
        return e;
    }
    return 0;
}
