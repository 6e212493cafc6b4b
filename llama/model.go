package llama

/*
#include <stdlib.h>
#include <stdint.h>
#include "llama.h"

extern bool boxLoadProgress(float progress, void *user_data);

static void box_set_progress(struct llama_model_params *p, void *ud) {
	p->progress_callback = boxLoadProgress;
	p->progress_callback_user_data = ud;
}
*/
import "C"

import (
	"context"
	"fmt"
	"runtime/cgo"
	"strings"
	"sync"
	"unsafe"

	"github.com/boxproj/box/gguf"
)

// ModelParams choose where and how a model is loaded.
type ModelParams struct {
	// Devices names the ggml devices to offload layers to, in order (see
	// ggml.Devices). Empty means none: the model stays on the CPU. llama.cpp would
	// otherwise take every registered GPU-type device, remote ones included.
	Devices []string
	// GPULayers is how many layers go to Devices; negative means all.
	GPULayers int
	// TensorSplit gives each of Devices its share of the layers.
	TensorSplit []float32
	// NoMmap reads the file instead of mapping it.
	NoMmap bool
	// NoHugePages keeps the host weights on the pages they were loaded
	// on. Otherwise the hot ones are moved onto transparent huge pages
	// after the load (see hugepages.cpp): a decode reads them all every
	// token, and 2 MiB pages spare it most TLB misses.
	NoHugePages bool
	// Progress, when set, is called as weights load (0..1).
	Progress func(float32)
	// Check, when set, reports failures of devices that cannot return an
	// error through ggml (remote workers). It is consulted after loading
	// and after every decode.
	Check func() error
}

// Model is a loaded GGUF model. Close frees it; contexts made from it must be
// closed first.
type Model struct {
	Path string

	m     *C.struct_llama_model
	vocab *C.struct_llama_vocab
	once  sync.Once
	check func() error

	pieceOnce sync.Once
	maxPiece  int

	// pages is held for reading by every decode and for writing by each
	// chunk the huge-page mover moves (see hugeMover).
	pages sync.RWMutex
	huge  hugeMover
}

// loadMu serialises loads so that the log lines captured for an error belong
// to that load.
var loadMu sync.Mutex

// LoadError says which file failed to load and why.
type LoadError struct {
	Path   string
	Reason string
	Err    error // the cause, when it is an error of its own (a device failure)
}

func (e *LoadError) Error() string { return fmt.Sprintf("load model %s: %s", e.Path, e.Reason) }
func (e *LoadError) Unwrap() error { return e.Err }

// LoadModel loads the GGUF file at path. Cancelling ctx aborts the load
// between tensors. Errors are *LoadError values naming the file and reason.
func LoadModel(ctx context.Context, path string, p ModelParams) (*Model, error) {
	ensureInit()
	// What is not a valid GGUF file is refused by box's one GGUF reader
	// with a reason a person can act on, before llama.cpp sees it.
	if err := gguf.Validate(path); err != nil {
		return nil, &LoadError{Path: path, Reason: err.Error()}
	}

	mp := C.llama_model_default_params()
	mp.use_mmap = C.bool(!p.NoMmap)
	mp.n_gpu_layers = 0

	// A NULL-terminated device list; an empty list still has to be explicit
	// so llama.cpp does not pick every GPU-type device by itself.
	var devs []C.ggml_backend_dev_t
	if len(p.Devices) > 0 {
		// The devices are ggml's (ggml.Devices lists them): looked up by
		// name in the one registry.
		for _, name := range p.Devices {
			cname := C.CString(name)
			d := C.ggml_backend_dev_by_name(cname)
			C.free(unsafe.Pointer(cname))
			if d == nil {
				return nil, &LoadError{Path: path, Reason: fmt.Sprintf("unknown device %q", name)}
			}
			devs = append(devs, d)
		}
		mp.n_gpu_layers = C.int32_t(p.GPULayers)
		if p.GPULayers < 0 {
			mp.n_gpu_layers = 999
		}
	}
	cdevs := (*C.ggml_backend_dev_t)(C.calloc(C.size_t(len(devs)+1), C.size_t(unsafe.Sizeof(C.ggml_backend_dev_t(nil)))))
	defer C.free(unsafe.Pointer(cdevs))
	for i, d := range devs {
		*(*C.ggml_backend_dev_t)(unsafe.Add(unsafe.Pointer(cdevs), i*int(unsafe.Sizeof(d)))) = d
	}
	mp.devices = cdevs

	if len(p.TensorSplit) > 0 {
		max := int(C.llama_max_devices())
		if len(p.TensorSplit) > max {
			return nil, &LoadError{Path: path, Reason: fmt.Sprintf("tensor split has %d entries, at most %d devices", len(p.TensorSplit), max)}
		}
		split := (*C.float)(C.calloc(C.size_t(max), C.size_t(unsafe.Sizeof(C.float(0)))))
		defer C.free(unsafe.Pointer(split))
		for i, f := range p.TensorSplit {
			*(*C.float)(unsafe.Add(unsafe.Pointer(split), i*4)) = C.float(f)
		}
		mp.tensor_split = split
	}

	// The callback's user data is C memory holding a cgo.Handle, so no Go
	// pointer is kept by C.
	h := cgo.NewHandle(&loadProgress{ctx: ctx, fn: p.Progress})
	defer h.Delete()
	ud := (*C.uintptr_t)(C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0)))))
	defer C.free(unsafe.Pointer(ud))
	*ud = C.uintptr_t(h)
	C.box_set_progress(&mp, unsafe.Pointer(ud))

	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))

	loadMu.Lock()
	done := captureErrors()
	m := C.llama_model_load_from_file(cpath, mp)
	lines := done()
	loadMu.Unlock()

	if m == nil {
		if err := ctx.Err(); err != nil {
			return nil, &LoadError{Path: path, Reason: "cancelled: " + err.Error()}
		}
		if p.Check != nil {
			if err := p.Check(); err != nil {
				return nil, &LoadError{Path: path, Reason: err.Error(), Err: err}
			}
		}
		return nil, &LoadError{Path: path, Reason: loadReason(lines)}
	}
	model := &Model{Path: path, m: m, vocab: C.llama_model_get_vocab(m), check: p.Check}
	if p.Check != nil {
		if err := p.Check(); err != nil {
			model.Close()
			return nil, &LoadError{Path: path, Reason: err.Error(), Err: err}
		}
	}
	if !p.NoHugePages {
		model.startHugePages()
	}
	return model, nil
}

type loadProgress struct {
	ctx context.Context
	fn  func(float32)
}

//export boxLoadProgress
func boxLoadProgress(progress C.float, ud unsafe.Pointer) C.bool {
	p := cgo.Handle(*(*C.uintptr_t)(ud)).Value().(*loadProgress)
	if p.fn != nil {
		p.fn(float32(progress))
	}
	return C.bool(p.ctx.Err() == nil)
}

// loadReason picks the most telling llama.cpp error line.
func loadReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if i := strings.Index(l, "error loading model:"); i >= 0 {
			return strings.TrimSpace(l[i+len("error loading model:"):])
		}
	}
	if len(lines) > 0 {
		return strings.Join(lines, "; ")
	}
	return "llama.cpp could not load the model"
}

// Close frees the model. It is safe to call more than once.
func (m *Model) Close() error {
	m.once.Do(func() {
		// The mover stops between chunks; the weights it reads are freed next.
		if m.huge.stop != nil {
			close(m.huge.stop)
			<-m.huge.done
		}
		C.llama_model_free(m.m)
		m.m = nil
	})
	return nil
}

// Desc is llama.cpp's one-line description, e.g. "llama ?B Q8_0".
func (m *Model) Desc() string {
	buf := make([]byte, 256)
	n := C.llama_model_desc(m.m, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	if n < 0 {
		return ""
	}
	return string(buf[:min(int(n), len(buf)-1)])
}

// Size is the bytes of all weights; Params their count.
func (m *Model) Size() uint64   { return uint64(C.llama_model_size(m.m)) }
func (m *Model) Params() uint64 { return uint64(C.llama_model_n_params(m.m)) }
func (m *Model) Layers() int    { return int(C.llama_model_n_layer(m.m)) }
func (m *Model) TrainCtx() int  { return int(C.llama_model_n_ctx_train(m.m)) }
func (m *Model) VocabSize() int { return int(C.llama_vocab_n_tokens(m.vocab)) }

// Meta returns a GGUF metadata value as text, and whether it exists.
func (m *Model) Meta(key string) (string, bool) {
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	buf := make([]byte, 4096)
	n := C.llama_model_meta_val_str(m.m, ck, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	if n < 0 {
		return "", false
	}
	return string(buf[:min(int(n), len(buf)-1)]), true
}
