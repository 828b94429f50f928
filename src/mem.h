/* Memory for the master alone: what it writes after every fork (its own
 * state, the child and source tables) is kept out of the workers. */
#ifndef ECHOD_MEM_H
#define ECHOD_MEM_H

#include <stddef.h>

/* Zeroed memory outside the heap, not inherited by forked workers
 * (MADV_DONTFORK). Shared with a new worker, each of the master's writes
 * to it after a fork would be a copy-on-write fault, and each fork would
 * copy its page tables. A worker must never touch it: it is not mapped
 * there. Returns NULL when out of memory. */
void *mem_master_alloc(size_t bytes);

/* Frees what mem_master_alloc returned (p may be NULL), given its size. */
void mem_master_free(void *p, size_t bytes);

#endif
