// ollama's ggml expects a buffer's free hook to delete the buffer object,
// which ggml_backend_buffer_init made with C++ new.
#include "ggml-backend-impl.h"

extern "C" void box_remote_delete_buffer(ggml_backend_buffer_t b) { delete b; }
