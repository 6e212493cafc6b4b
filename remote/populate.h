#pragma once
#include <stdint.h>

// box_nopopulate_add makes mmap drop MAP_POPULATE for the file (device,
// inode) until box_nopopulate_remove of the slot it returns (-1: no free
// slot, nothing changes).
int box_nopopulate_add(uint64_t dev, uint64_t ino);
void box_nopopulate_remove(int slot);
