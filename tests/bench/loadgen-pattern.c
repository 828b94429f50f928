/* The bytes loadgen sends: a pure function of a connection's key and the
 * offset in its stream, so the receiving side recomputes them instead of
 * keeping what was sent. */
#include "loadgen.h"

#include <endian.h>
#include <string.h>

/* splitmix64's output function over a counter: a well-mixed word for any
 * (key, index), computed on its own. */
uint64_t lg_mix(uint64_t key, uint64_t idx)
{
	uint64_t z = key + (idx + 1) * 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t lg_key(const struct lg_run *r, size_t slot, uint64_t cycle)
{
	return lg_mix(lg_mix(r->seed, slot), cycle);
}

/* The pattern is a random table of LG_TABLE_WORDS words, XORed with one mixed
 * word per table-sized block of the stream, from the connection's key and
 * the block's number. So a byte out of place within a block, a block lost,
 * repeated or swapped, and another connection's bytes all differ from what
 * is expected, and generating or checking a word costs a load and an XOR:
 * the generator must not be what limits a throughput run. */
#define LG_TABLE_SHIFT 13
#define LG_TABLE_WORDS (1u << LG_TABLE_SHIFT)
#define LG_TABLE_MASK  (LG_TABLE_WORDS - 1)

static uint64_t pattern_table[LG_TABLE_WORDS];

/* From the complement of the seed, so that no table word equals a key that
 * lg_key() derives from the seed itself. */
void lg_pattern_init(uint64_t seed)
{
	for (size_t j = 0; j < LG_TABLE_WORDS; j++)
		pattern_table[j] = lg_mix(~seed, j);
}

static uint64_t pattern_word(uint64_t key, uint64_t w)
{
	return pattern_table[w & LG_TABLE_MASK] ^ lg_mix(key, w >> LG_TABLE_SHIFT);
}

unsigned char lg_pattern_byte(uint64_t key, uint64_t off)
{
	return (unsigned char)(pattern_word(key, off / 8) >> (8 * (off % 8)));
}

/* Whole words from byte offset off (a multiple of 8) up to the end of its
 * block, at most `words`: the count, with the block's word in *blk. */
static size_t block_span(uint64_t key, uint64_t off, size_t words, uint64_t *blk)
{
	uint64_t w = off / 8;
	size_t left = LG_TABLE_WORDS - (size_t)(w & LG_TABLE_MASK);

	*blk = lg_mix(key, w >> LG_TABLE_SHIFT);
	return words < left ? words : left;
}

void lg_pattern_fill(uint64_t key, uint64_t off, unsigned char *buf, size_t len)
{
	size_t i = 0;

	for (; i < len && (off + i) % 8; i++)
		buf[i] = lg_pattern_byte(key, off + i);
	while (len - i >= 8) {
		uint64_t blk;
		size_t n = block_span(key, off + i, (len - i) / 8, &blk);
		const uint64_t *t = pattern_table + ((off + i) / 8 & LG_TABLE_MASK);

		for (size_t k = 0; k < n; k++) {
			uint64_t v = htole64(t[k] ^ blk);

			memcpy(buf + i + 8 * k, &v, 8);
		}
		i += 8 * n;
	}
	for (; i < len; i++)
		buf[i] = lg_pattern_byte(key, off + i);
}

size_t lg_pattern_check(uint64_t key, uint64_t off, const unsigned char *buf, size_t len)
{
	size_t i = 0;

	for (; i < len && (off + i) % 8; i++)
		if (buf[i] != lg_pattern_byte(key, off + i))
			return i;
	/* One test per span keeps the loop branch-free; a span that differs
	 * is searched byte by byte below. */
	while (len - i >= 8) {
		uint64_t blk, diff = 0;
		size_t n = block_span(key, off + i, (len - i) / 8, &blk);
		const uint64_t *t = pattern_table + ((off + i) / 8 & LG_TABLE_MASK);

		for (size_t k = 0; k < n; k++) {
			uint64_t v;

			memcpy(&v, buf + i + 8 * k, 8);
			diff |= v ^ htole64(t[k] ^ blk);
		}
		if (diff)
			break;
		i += 8 * n;
	}
	for (; i < len; i++)
		if (buf[i] != lg_pattern_byte(key, off + i))
			return i;
	return len;
}
