#version 460

// Probe for ggml-vulkan's CMake (test_shader_extension_support): glslc
// reports "extension not supported: GL_KHR_cooperative_matrix" when it lacks it. The
// vendored tree ships without these files, and a missing file reads as
// "supported" there. Provided by box (scripts/backends.sh).
#extension GL_KHR_cooperative_matrix : require

void main()
{
}
