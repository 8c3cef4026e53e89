/* kept_signs_x86.h — a kept_signs layer's +1 words (internal.h) rebuilt by BMI2's pdep a few words ahead of their
 * use: shared by the x86 products on int8 activations (kernel_q8_avx512.c, kernel_avx2.c, kernel_q8_tokens_avx2.c).
 * Its functions carry target("bmi2"), so an AVX2 unit compiled without -mbmi2 may call them; a model prepares
 * kept_signs layers for a variant only where the CPU deposits bits fast (dispatch.c, reads_kept_signs). */
#ifndef PBS2P_KEPT_SIGNS_X86_H
#define PBS2P_KEPT_SIGNS_X86_H

#include "internal.h"

#include <immintrin.h>
#include <string.h>

#define PBS2P_BMI2 __attribute__((target("bmi2")))

/* Words whose +1 words are rebuilt before they are summed, so the scalar stores reach the vector load in time (a
 * 7B-shape file of 8 blocks, one thread, AVX-512: 1 word ahead 26.5-26.9 tok/s, 2: 29.2-32.3, 3: 30.9-32.7, 5:
 * 28.3-32.2), and the ring slots they are kept in (more than SIGNS_AHEAD). The ring runs over a row block's words in
 * order, across its scale groups (word g W + w for w < pbs2p_group_words; only the last group short, so words
 * 0 .. n - 1): restarted at every group, the group's first words were summed right after their pdeps' stores. */
#define SIGNS_AHEAD 3
#define SIGNS_RING 8

/* One row block's words as the ring reads them: its kept words (word a of its rows at kept + a * nr), its signs
 * (likewise), its rows nr, the distance in words to the next row block's word at the same place (prefetched), and its
 * n words. Held const by the kernels, apart from the ring's slots (uint64_t stores could alias the size_t fields and
 * make every word reload them: a 7B-shape decode pass at two threads, AVX-512, 20.6 ms -> 24.1 with one struct). */
typedef struct signs_ring {
    const uint32_t *kept;
    const uint16_t *signs;
    size_t nr, ahead, n;
} signs_ring;

/* Rows 2q and 2q + 1's +1 words of one word (their kept words at kept + 2q, signs at signs + 2q) as one 64-bit pdep:
 * row 2q's 16 kept bits take the low 16 signs. */
static inline PBS2P_BMI2 uint64_t plus_pair(const uint32_t *kept, const uint16_t *signs, int q) {
    uint64_t k;
    uint32_t sg;
    memcpy(&k, kept + 2 * q, sizeof k);
    memcpy(&sg, signs + 2 * q, sizeof sg);
    return _pdep_u64(sg, k);
}

/* The 16 rows' +1 words of one word from its kept words and signs into dst. Lanes past a short last block's rows read
 * the bytes after them (bits has PBS2P_KEPT_SIGNS_SLACK) and are never used. */
static inline PBS2P_BMI2 void plus_words(const uint32_t *kept, const uint16_t *signs, uint64_t *dst) {
    for (int q = 0; q < 8; q++) dst[q] = plus_pair(kept, signs, q);
}

/* The words of a row block of L in sequence (see above). */
static inline size_t pbs2p_block_words(const struct pbs2p_layer *L) {
    return (size_t)(L->groups - 1) * (size_t)L->words + pbs2p_group_words(L, (size_t)L->groups - 1);
}

/* Row block `first` of kept_signs layer L. */
static inline signs_ring signs_ring_at(const struct pbs2p_layer *L, size_t first) {
    /* every row block but the last holds 16 rows of row_words */
    return (signs_ring){pbs2p_block_bits(L, first), pbs2p_block_signs(L, first), pbs2p_block_rows(L, first),
                        L->row_words * PBS2P_ROW_BLOCK, pbs2p_block_words(L)};
}

/* Word a's +1 words into its slot. */
static inline PBS2P_BMI2 void ring_fill(const signs_ring *r, uint64_t (*slot)[8], size_t a) {
    plus_words(r->kept + a * r->nr, r->signs + a * r->nr, slot[a % SIGNS_RING]);
}

/* The slots (SIGNS_RING of 8, 64-byte aligned) before word 0 is summed: the first SIGNS_AHEAD words rebuilt. */
static inline PBS2P_BMI2 void ring_start(const signs_ring *r, uint64_t (*slot)[8]) {
    for (size_t a = 0; a < SIGNS_AHEAD && a < r->n; a++) ring_fill(r, slot, a);
}

/* Word blk's +1 words (16 rows), while the word SIGNS_AHEAD on is rebuilt and the next row block's signs at blk are
 * prefetched as its kept words are. */
static inline PBS2P_BMI2 const uint64_t *ring_step(const signs_ring *r, uint64_t (*slot)[8], size_t blk) {
    if (blk + SIGNS_AHEAD < r->n) ring_fill(r, slot, blk + SIGNS_AHEAD);
    __builtin_prefetch(r->signs + blk * r->nr + 2 * r->ahead, 0, 2);
    return slot[blk % SIGNS_RING];
}

#endif
