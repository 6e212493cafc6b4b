#pragma once
#include <stdint.h>
#include <stddef.h>
#include "ggml.h"
#include "ggml-backend.h"
#include "ggml-backend-impl.h"

// One remote device as ggml sees it.
typedef struct {
	uintptr_t handle; // cgo.Handle of the Go *Device
	char name[96];
	char desc[160];
	char buft_name[160];
	size_t alignment, max_size;
	struct ggml_backend_device dev;
	struct ggml_backend_buffer_type buft;
	unsigned char op_missing[GGML_OP_COUNT]; // ops the worker's protocol lacks: never placed there
} box_rdev;

typedef struct {
	box_rdev *dev;
	uint64_t remote; // the worker's buffer handle
	uint64_t base;   // the worker's base address for it
	uint64_t gen;    // the connection it was allocated on (Node.gen)
} box_rbuf;


ggml_backend_reg_t box_remote_register(const char *name, int n, const uintptr_t *handles,
		const char **names, const char **descs, const size_t *aligns, const size_t *maxes);
ggml_backend_buffer_type_t box_rdev_buft(ggml_backend_reg_t reg, int i);
ggml_backend_buffer_type_t box_rbuf_type(struct ggml_tensor *t);
uint64_t box_rbuf_remote(struct ggml_tensor *t);
uintptr_t box_rbuf_dev(struct ggml_tensor *t);
int box_is_rbuft(ggml_backend_buffer_type_t t);
uint64_t box_rbuf_gen(struct ggml_tensor *t);
void box_rdev_set_op_missing(ggml_backend_reg_t reg, int i, int op, int missing);
