// box: Vulkan header compatibility for ggml-vulkan.cpp, force-included into
// the ggml-vulkan target by scripts/backends.sh.
//
// ggml_vk_instance_init chains a VkLayerSettingsCreateInfoEXT into the
// instance create info (it enables best-practice checks when the validation
// layer is present). VK_EXT_layer_settings arrived in Vulkan headers 1.3.261;
// Debian 12 ships 1.3.239, where the vk:: types are missing. This declares
// the C structs and the three vk:: names the file uses, with the layouts of
// the registry, only when the headers lack them. Drivers ignore the unknown
// structure in the chain, exactly as with newer headers when no validation
// layer is installed.
#pragma once
#include <vulkan/vulkan_core.h>

#ifndef VK_EXT_layer_settings
#define VK_EXT_layer_settings 1
#define VK_EXT_LAYER_SETTINGS_SPEC_VERSION 2
#define VK_EXT_LAYER_SETTINGS_EXTENSION_NAME "VK_EXT_layer_settings"
#define BOX_VK_STRUCTURE_TYPE_LAYER_SETTINGS_CREATE_INFO_EXT ((VkStructureType)1000496000)

typedef enum VkLayerSettingTypeEXT {
	VK_LAYER_SETTING_TYPE_BOOL32_EXT = 0,
	VK_LAYER_SETTING_TYPE_INT32_EXT = 1,
	VK_LAYER_SETTING_TYPE_INT64_EXT = 2,
	VK_LAYER_SETTING_TYPE_UINT32_EXT = 3,
	VK_LAYER_SETTING_TYPE_UINT64_EXT = 4,
	VK_LAYER_SETTING_TYPE_FLOAT32_EXT = 5,
	VK_LAYER_SETTING_TYPE_FLOAT64_EXT = 6,
	VK_LAYER_SETTING_TYPE_STRING_EXT = 7,
	VK_LAYER_SETTING_TYPE_MAX_ENUM_EXT = 0x7FFFFFFF
} VkLayerSettingTypeEXT;

typedef struct VkLayerSettingEXT {
	const char *pLayerName;
	const char *pSettingName;
	VkLayerSettingTypeEXT type;
	uint32_t valueCount;
	const void *pValues;
} VkLayerSettingEXT;

typedef struct VkLayerSettingsCreateInfoEXT {
	VkStructureType sType;
	const void *pNext;
	uint32_t settingCount;
	const VkLayerSettingEXT *pSettings;
} VkLayerSettingsCreateInfoEXT;

#ifdef __cplusplus
#include <cstdint>
#include <vector>
namespace vk {
enum class LayerSettingTypeEXT : int32_t {
	eBool32 = VK_LAYER_SETTING_TYPE_BOOL32_EXT,
	eInt32 = VK_LAYER_SETTING_TYPE_INT32_EXT,
	eInt64 = VK_LAYER_SETTING_TYPE_INT64_EXT,
	eUint32 = VK_LAYER_SETTING_TYPE_UINT32_EXT,
	eUint64 = VK_LAYER_SETTING_TYPE_UINT64_EXT,
	eFloat32 = VK_LAYER_SETTING_TYPE_FLOAT32_EXT,
	eFloat64 = VK_LAYER_SETTING_TYPE_FLOAT64_EXT,
	eString = VK_LAYER_SETTING_TYPE_STRING_EXT,
};

struct LayerSettingEXT {
	const char *pLayerName;
	const char *pSettingName;
	LayerSettingTypeEXT type;
	uint32_t valueCount;
	const void *pValues;
};
static_assert(sizeof(LayerSettingEXT) == sizeof(VkLayerSettingEXT), "layout");

struct LayerSettingsCreateInfoEXT {
	VkStructureType sType = BOX_VK_STRUCTURE_TYPE_LAYER_SETTINGS_CREATE_INFO_EXT;
	const void *pNext = nullptr;
	uint32_t settingCount = 0;
	const LayerSettingEXT *pSettings = nullptr;

	LayerSettingsCreateInfoEXT(const std::vector<LayerSettingEXT> &s, const void *next = nullptr)
		: pNext(next), settingCount(static_cast<uint32_t>(s.size())), pSettings(s.data()) {}
};
static_assert(sizeof(LayerSettingsCreateInfoEXT) == sizeof(VkLayerSettingsCreateInfoEXT), "layout");
} // namespace vk
#endif
#endif
