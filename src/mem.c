/* The master's private memory: anonymous mappings marked MADV_DONTFORK. */
#include "mem.h"

#include <sys/mman.h>

void *mem_master_alloc(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Should this fail, forks only cost what they did before. */
	(void)madvise(p, bytes, MADV_DONTFORK);
	return p;
}

void mem_master_free(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes);
}
