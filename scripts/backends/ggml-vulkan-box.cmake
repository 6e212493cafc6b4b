# box (scripts/backends.sh appends this to the prepared copy of
# ggml-vulkan/CMakeLists.txt): VK_EXT_layer_settings types for Vulkan
# headers older than 1.3.261 (see box-vk-compat.h).
if (TARGET ggml-vulkan)
    target_compile_options(ggml-vulkan PRIVATE -include ${CMAKE_CURRENT_SOURCE_DIR}/box-vk-compat.h)
endif()
