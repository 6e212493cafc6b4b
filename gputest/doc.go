// Package gputest holds the GPU-path suite: box's workers, heads, quotas
// and leak gate on a real ggml GPU backend loaded at run time. It is built
// only with the "vulkan" tag (make test-vulkan), which needs
// lib/box/libggml-vulkan.so (make vulkan) and fails without it; on CI the
// device is Mesa's lavapipe (a software Vulkan GPU). See docs/gpu.md.
package gputest
