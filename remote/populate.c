// llama.cpp maps the whole model file with MAP_POPULATE, which builds the
// page tables of every page up front (80-120 ms per 889 MB here, and about
// 30 ms more to tear them down when the loader unmaps the offloaded part).
// While an Upload sends a file's weights from the head's own mapping,
// nothing reads llama.cpp's mapping of them, so that work is wasted. This
// file defines mmap for the process: for a file registered by an Upload it
// drops MAP_POPULATE (pages that are read still fault in on demand, and
// llama.cpp's WILLNEED readahead stays); every other call goes to the
// kernel unchanged.
#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "populate.h"

#define BOX_NOPOP_SLOTS 8

static struct {
	uint64_t dev, ino;
	int used;
} box_nopop_slot[BOX_NOPOP_SLOTS];
static int box_nopop_active; // slots in use; read without the lock first
static pthread_mutex_t box_nopop_mu = PTHREAD_MUTEX_INITIALIZER;

int box_nopopulate_add(uint64_t dev, uint64_t ino) {
	int got = -1;
	pthread_mutex_lock(&box_nopop_mu);
	for (int i = 0; i < BOX_NOPOP_SLOTS; i++) {
		if (!box_nopop_slot[i].used) {
			box_nopop_slot[i].dev = dev;
			box_nopop_slot[i].ino = ino;
			box_nopop_slot[i].used = 1;
			__atomic_add_fetch(&box_nopop_active, 1, __ATOMIC_RELEASE);
			got = i;
			break;
		}
	}
	pthread_mutex_unlock(&box_nopop_mu);
	return got;
}

void box_nopopulate_remove(int slot) {
	if (slot < 0 || slot >= BOX_NOPOP_SLOTS) return;
	pthread_mutex_lock(&box_nopop_mu);
	if (box_nopop_slot[slot].used) {
		box_nopop_slot[slot].used = 0;
		__atomic_sub_fetch(&box_nopop_active, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&box_nopop_mu);
}

static int box_nopop_file(int fd) {
	if (__atomic_load_n(&box_nopop_active, __ATOMIC_ACQUIRE) == 0) return 0;
	struct stat st;
	if (fstat(fd, &st) != 0) return 0;
	int hit = 0;
	pthread_mutex_lock(&box_nopop_mu);
	for (int i = 0; i < BOX_NOPOP_SLOTS && !hit; i++) {
		hit = box_nopop_slot[i].used && box_nopop_slot[i].dev == (uint64_t)st.st_dev && box_nopop_slot[i].ino == (uint64_t)st.st_ino;
	}
	pthread_mutex_unlock(&box_nopop_mu);
	return hit;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
	if ((flags & MAP_POPULATE) && fd >= 0 && box_nopop_file(fd)) flags &= ~MAP_POPULATE;
	// The raw call returns -1 with errno set on failure, which is MAP_FAILED.
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}
#else
#include "populate.h"
int box_nopopulate_add(uint64_t dev, uint64_t ino) { (void)dev; (void)ino; return -1; }
void box_nopopulate_remove(int slot) { (void)slot; }
#endif
