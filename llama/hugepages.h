// The C face of hugepages.cpp, for the Go side of package llama.
#ifndef BOX_HUGEPAGES_H
#define BOX_HUGEPAGES_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct llama_model;

enum { BOX_HUGE_ANON = 1, BOX_HUGE_MAPPED = 2 };

// The most bytes one box_huge_move call copies.
#define BOX_HUGE_CHUNK (64u << 20)

// One 2 MiB-aligned range of hot host weights, and the kind of memory
// holding it (BOX_HUGE_ANON or BOX_HUGE_MAPPED).
typedef struct {
    uint64_t addr;
    uint64_t len;
    int kind;
} box_huge_span;

int box_huge_spans(const struct llama_model *m, box_huge_span *out, int cap);
int box_huge_move(uint64_t addr, uint64_t len, int kind, int *lost);

#ifdef __cplusplus
}
#endif

#endif
