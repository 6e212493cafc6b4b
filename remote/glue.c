// ggml backend vtables for remote devices; every operation calls into Go.

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "ggml.h"
#include "ggml-backend.h"
#include "ggml-backend-impl.h"

#include "glue.h"

extern void box_remote_delete_buffer(ggml_backend_buffer_t b);

// Go side (exported from remote.go).
extern void boxRemoteMemory(uintptr_t h, size_t *free, size_t *total);
extern int boxRemoteAlloc(uintptr_t h, size_t size, uint64_t *remote, uint64_t *base, size_t *got, uint64_t *gen);
extern void boxRemoteFree(uintptr_t h, uint64_t remote, uint64_t gen, size_t size);
extern void boxRemoteSet(uintptr_t h, struct ggml_tensor *t, void *data, size_t off, size_t n);
extern void boxRemoteGet(uintptr_t h, struct ggml_tensor *t, void *data, size_t off, size_t n);
extern void boxRemoteMemset(uintptr_t h, struct ggml_tensor *t, uint8_t v, size_t off, size_t n);
extern int boxRemoteCopy(uintptr_t h, struct ggml_tensor *src, struct ggml_tensor *dst);
extern void boxRemoteClear(uintptr_t h, uint64_t remote, uint64_t gen, uint8_t v);
extern size_t boxRemoteAllocSize(uintptr_t h, struct ggml_tensor *t);
extern int boxRemoteCompute(uintptr_t h, struct ggml_cgraph *g);

// ---- buffer ----
static void rbuf_free(ggml_backend_buffer_t b) {
	box_rbuf *rb = (box_rbuf *)b->context;
	boxRemoteFree(rb->dev->handle, rb->remote, rb->gen, b->size);
	free(rb);
	box_remote_delete_buffer(b);
}
static void *rbuf_base(ggml_backend_buffer_t b) { return (void *)(uintptr_t)((box_rbuf *)b->context)->base; }
static void rbuf_memset(ggml_backend_buffer_t b, struct ggml_tensor *t, uint8_t v, size_t off, size_t n) {
	boxRemoteMemset(((box_rbuf *)b->context)->dev->handle, t, v, off, n);
}
static void rbuf_set(ggml_backend_buffer_t b, struct ggml_tensor *t, const void *data, size_t off, size_t n) {
	boxRemoteSet(((box_rbuf *)b->context)->dev->handle, t, (void *)data, off, n);
}
static void rbuf_get(ggml_backend_buffer_t b, const struct ggml_tensor *t, void *data, size_t off, size_t n) {
	boxRemoteGet(((box_rbuf *)b->context)->dev->handle, (struct ggml_tensor *)t, data, off, n);
}
static bool rbuf_cpy(ggml_backend_buffer_t b, const struct ggml_tensor *src, struct ggml_tensor *dst) {
	return boxRemoteCopy(((box_rbuf *)b->context)->dev->handle, (struct ggml_tensor *)src, dst) != 0;
}
static void rbuf_clear(ggml_backend_buffer_t b, uint8_t v) {
	box_rbuf *rb = (box_rbuf *)b->context;
	boxRemoteClear(rb->dev->handle, rb->remote, rb->gen, v);
}

static const struct ggml_backend_buffer_i rbuf_iface = {
	rbuf_free, rbuf_base, NULL, rbuf_memset, rbuf_set, rbuf_get, rbuf_cpy, rbuf_clear, NULL,
};

// ---- buffer type ----
static const char *rbuft_name(ggml_backend_buffer_type_t t) { return ((box_rdev *)t->context)->buft_name; }
static ggml_backend_buffer_t rbuft_alloc(ggml_backend_buffer_type_t t, size_t size) {
	box_rdev *d = (box_rdev *)t->context;
	uint64_t remote = 0, base = 0, gen = 0;
	size_t got = 0;
	if (boxRemoteAlloc(d->handle, size, &remote, &base, &got, &gen) != 0) return NULL;
	box_rbuf *rb = (box_rbuf *)calloc(1, sizeof(*rb));
	rb->dev = d; rb->remote = remote; rb->base = base; rb->gen = gen;
	return ggml_backend_buffer_init(t, rbuf_iface, rb, got);
}
static size_t rbuft_align(ggml_backend_buffer_type_t t) { return ((box_rdev *)t->context)->alignment; }
static size_t rbuft_max(ggml_backend_buffer_type_t t) { return ((box_rdev *)t->context)->max_size; }
static size_t rbuft_alloc_size(ggml_backend_buffer_type_t t, const struct ggml_tensor *tensor) {
	// Only quantized rows that a GPU worker may pad need asking (as the
	// reference client does); everything else is its plain size.
	if (ggml_is_quantized(tensor->type) && tensor->ne[0] % 512 != 0 && tensor->view_src == NULL) {
		size_t n = boxRemoteAllocSize(((box_rdev *)t->context)->handle, (struct ggml_tensor *)tensor);
		if (n) return n;
	}
	return ggml_nbytes(tensor);
}
static bool rbuft_is_host(ggml_backend_buffer_type_t t) { (void)t; return false; }

static const struct ggml_backend_buffer_type_i rbuft_iface = {
	rbuft_name, rbuft_alloc, rbuft_align, rbuft_max, rbuft_alloc_size, rbuft_is_host, NULL,
};

// ---- backend (stream) ----
static const char *rbe_name(ggml_backend_t be) { return ((box_rdev *)be->context)->name; }
static void rbe_free(ggml_backend_t be) { free(be); }
static enum ggml_status rbe_compute(ggml_backend_t be, struct ggml_cgraph *g, int batch_size) {
	(void)batch_size;
	return boxRemoteCompute(((box_rdev *)be->context)->handle, g) == 0 ? GGML_STATUS_SUCCESS : GGML_STATUS_FAILED;
}
static const struct ggml_backend_i rbe_iface = {
	rbe_name, rbe_free, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, rbe_compute, NULL, NULL, NULL, NULL, NULL, NULL,
};
static ggml_guid box_rguid = {0x62, 0x6f, 0x78, 0x2d, 0x72, 0x70, 0x63, 0x2d, 0x33, 0x2e, 0x36, 0x2e, 0x30, 0x00, 0x00, 0x01};

// ---- device ----
static const char *rdev_name(ggml_backend_dev_t d) { return ((box_rdev *)d->context)->name; }
static const char *rdev_desc(ggml_backend_dev_t d) { return ((box_rdev *)d->context)->desc; }
static void rdev_memory(ggml_backend_dev_t d, size_t *free, size_t *total) { boxRemoteMemory(((box_rdev *)d->context)->handle, free, total); }
static enum ggml_backend_dev_type rdev_type(ggml_backend_dev_t d) { (void)d; return GGML_BACKEND_DEVICE_TYPE_GPU; }
static void rdev_props(ggml_backend_dev_t d, struct ggml_backend_dev_props *p) {
	box_rdev *rd = (box_rdev *)d->context;
	p->name = rd->name;
	p->description = rd->desc;
	p->id = rd->name;
	p->type = GGML_BACKEND_DEVICE_TYPE_GPU;
	p->library = "box-rpc";
	boxRemoteMemory(rd->handle, &p->memory_free, &p->memory_total);
	memset(&p->caps, 0, sizeof(p->caps));
}
static ggml_backend_t rdev_init(ggml_backend_dev_t d, const char *params) {
	(void)params;
	ggml_backend_t be = (ggml_backend_t)calloc(1, sizeof(struct ggml_backend));
	be->guid = &box_rguid;
	be->iface = rbe_iface;
	be->device = d;
	be->context = d->context;
	return be;
}
static ggml_backend_buffer_type_t rdev_buft(ggml_backend_dev_t d) { return &((box_rdev *)d->context)->buft; }

// The ops box workers compute (the worker's allowlist); anything else runs
// on the head, so a graph never reaches a worker that would refuse it.
static bool rdev_supports_op(ggml_backend_dev_t d, const struct ggml_tensor *op) {
	if (op->op >= 0 && op->op < GGML_OP_COUNT && ((box_rdev *)d->context)->op_missing[op->op]) return false;
	switch (op->op) {
	case GGML_OP_NONE: case GGML_OP_DUP: case GGML_OP_ADD: case GGML_OP_SUB: case GGML_OP_MUL: case GGML_OP_DIV:
	case GGML_OP_SQR: case GGML_OP_SQRT: case GGML_OP_SUM_ROWS: case GGML_OP_NORM: case GGML_OP_RMS_NORM:
	case GGML_OP_MUL_MAT: case GGML_OP_SCALE: case GGML_OP_CPY: case GGML_OP_CONT: case GGML_OP_RESHAPE:
	case GGML_OP_VIEW: case GGML_OP_PERMUTE: case GGML_OP_TRANSPOSE: case GGML_OP_GET_ROWS: case GGML_OP_SET_ROWS:
	case GGML_OP_SOFT_MAX: case GGML_OP_ROPE: case GGML_OP_CONCAT: case GGML_OP_FLASH_ATTN_EXT: case GGML_OP_UNARY:
	case GGML_OP_GLU:
		return true;
	default:
		return false;
	}
}
static bool rdev_supports_buft(ggml_backend_dev_t d, ggml_backend_buffer_type_t t) { return t == &((box_rdev *)d->context)->buft; }

static const struct ggml_backend_device_i rdev_iface = {
	rdev_name, rdev_desc, rdev_memory, rdev_type, rdev_props, rdev_init, rdev_buft, NULL, NULL,
	rdev_supports_op, rdev_supports_buft, NULL, NULL, NULL, NULL, NULL,
};

// ---- registry: one per worker endpoint ----
typedef struct {
	char name[128];
	size_t n;
	box_rdev **devs;
} box_rreg;

static const char *rreg_name(ggml_backend_reg_t r) { return ((box_rreg *)r->context)->name; }
static size_t rreg_count(ggml_backend_reg_t r) { return ((box_rreg *)r->context)->n; }
static ggml_backend_dev_t rreg_dev(ggml_backend_reg_t r, size_t i) { return &((box_rreg *)r->context)->devs[i]->dev; }
static void *rreg_proc(ggml_backend_reg_t r, const char *name) { (void)r; (void)name; return NULL; }
static const struct ggml_backend_reg_i rreg_iface = { rreg_name, rreg_count, rreg_dev, rreg_proc };

// box_remote_register creates the registry of an endpoint with n devices
// and registers it with ggml. The objects live for the process: ggml has no
// way to unregister a backend.
ggml_backend_reg_t box_remote_register(const char *name, int n, const uintptr_t *handles,
		const char **names, const char **descs, const size_t *aligns, const size_t *maxes) {
	box_rreg *rr = (box_rreg *)calloc(1, sizeof(*rr));
	strncpy(rr->name, name, sizeof(rr->name) - 1);
	rr->n = (size_t)n;
	rr->devs = (box_rdev **)calloc((size_t)n, sizeof(box_rdev *));
	struct ggml_backend_reg *reg = (struct ggml_backend_reg *)calloc(1, sizeof(*reg));
	reg->api_version = GGML_BACKEND_API_VERSION;
	reg->iface = rreg_iface;
	reg->context = rr;
	for (int i = 0; i < n; i++) {
		box_rdev *d = (box_rdev *)calloc(1, sizeof(*d));
		d->handle = handles[i];
		strncpy(d->name, names[i], sizeof(d->name) - 1);
		strncpy(d->desc, descs[i], sizeof(d->desc) - 1);
		snprintf(d->buft_name, sizeof(d->buft_name), "%s", names[i]);
		d->alignment = aligns[i];
		d->max_size = maxes[i];
		d->dev.iface = rdev_iface;
		d->dev.reg = reg;
		d->dev.context = d;
		d->buft.iface = rbuft_iface;
		d->buft.device = &d->dev;
		d->buft.context = d;
		rr->devs[i] = d;
	}
	ggml_backend_register(reg);
	return reg;
}

// box_rdev_buft is the buffer type of device i of a registry made above.
ggml_backend_buffer_type_t box_rdev_buft(ggml_backend_reg_t reg, int i) {
	return &((box_rreg *)reg->context)->devs[i]->buft;
}

ggml_backend_buffer_type_t box_rbuf_type(struct ggml_tensor *t) {
	return t->buffer ? t->buffer->buft : NULL;
}
uint64_t box_rbuf_gen(struct ggml_tensor *t) { return ((box_rbuf *)t->buffer->context)->gen; }
uint64_t box_rbuf_remote(struct ggml_tensor *t) { return ((box_rbuf *)t->buffer->context)->remote; }
uintptr_t box_rbuf_dev(struct ggml_tensor *t) { return ((box_rbuf *)t->buffer->context)->dev->handle; }
int box_is_rbuft(ggml_backend_buffer_type_t t) { return t && t->iface.alloc_buffer == rbuft_alloc; }

// box_rdev_set_op_missing marks op as one the worker's protocol lacks.
void box_rdev_set_op_missing(ggml_backend_reg_t reg, int i, int op, int missing) {
	if (op >= 0 && op < GGML_OP_COUNT) ((box_rreg *)reg->context)->devs[i]->op_missing[op] = (unsigned char)missing;
}
