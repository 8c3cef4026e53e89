/* kernel_q8_avx512.c — the packed layers' products on int8 activations (internal.h) with AVX-512 VBMI and VNNI: byte tables looked up by vpermb, summed by vpdpbusd (T-MAC's lookup tables, in integers).
 *
 * A register holds one 32-bit plane word of each of 16 interleaved rows (the prepared layout): byte j of a word is
 * octet j of its 32 columns. For every activation block the 16 sums of its codes over each 4-bit mask of each of the
 * 8 column quads are int16 (|sum| <= 4 * 127); they are stored as two 64-byte tables per nibble half h, their low
 * and their high bytes, indexed 16 j + mask for octet j's quad 2 j + h. So the index of byte j of a word is its
 * nibble with j in bits 4-5 (one vpternlogd), and one vpermb looks up 64 quads of 16 rows at once. vpdpbusd then
 * adds each row's 4 looked-up bytes into its 32-bit lane: low bytes as unsigned, high bytes as signed, the row's
 * exact integer sum = low + 256 * high. Per 16 rows x 32 columns x plane: 4 vpermb, 4 vpdpbusd and about 8 other
 * vector operations, against 8 vpermps, 7 shifts and 8 adds on float tables in kernel_avx512.c; a prompt's tokens
 * share each loaded word and its indices, TOKEN_TILE at a time. */
#include "internal.h"
#include "kept_signs_x86.h"

#if defined(PBS2P_HAVE_AVX512_VNNI) && defined(PBS2P_HAVE_AVX512_VBMI) /* else an empty unit */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIXED_PLANES 7
#define TABLE_BYTES 256 /* per activation block: for h = 0, 1 the low-byte table, then the high-byte table */

/* The tables of every activation block. A quad's 16 sums are one vpdpbusd: lane m holds the bits of m as bytes
 * (0 or 1) and multiplies the quad's 4 codes, broadcast to every lane. */
static void build_tables(const pbs2p_q8_acts *A, size_t blocks, uint8_t *tab) {
    int32_t pattern[16] __attribute__((aligned(64)));
    for (int m = 0; m < 16; m++) pattern[m] = (m & 1) | (m >> 1 & 1) << 8 | (m >> 2 & 1) << 16 | (m >> 3 & 1) << 24;
    const __m512i bits = _mm512_load_si512(pattern);
    for (size_t k = 0; k < blocks; k++) {
        const int8_t *q = A->q + k * PBS2P_ACT_BLOCK;
        uint8_t *t = tab + k * TABLE_BYTES;
        for (int quad = 0; quad < 8; quad++) {
            int32_t codes;
            memcpy(&codes, q + 4 * quad, sizeof codes);
            const __m512i e = _mm512_dpbusd_epi32(_mm512_setzero_si512(), bits, _mm512_set1_epi32(codes));
            uint8_t *dst = t + 128 * (quad % 2) + 16 * (quad / 2);
            _mm_storeu_si128((__m128i *)dst, _mm512_cvtepi32_epi8(e));
            _mm_storeu_si128((__m128i *)(dst + 64), _mm512_cvtepi32_epi8(_mm512_srai_epi32(e, 8)));
        }
    }
}

/* The vpermb indices of a plane word's low (*i0) and high (*i1) nibbles: (nibble) | j << 4 for byte j. */
static inline void word_indices(__m512i v, __m512i *i0, __m512i *i1) {
    const __m512i octet = _mm512_set1_epi32(0x30201000), nibble = _mm512_set1_epi8(0x0F);
    *i0 = _mm512_ternarylogic_epi32(v, nibble, octet, 0xEA); /* (a & b) | c */
    *i1 = _mm512_ternarylogic_epi32(_mm512_srli_epi32(v, 4), nibble, octet, 0xEA);
}

/* The 16 rows' exact sums of one plane word (its indices i0, i1) over the tables of its activation block. */
static inline __m512i lookup_sum(__m512i i0, __m512i i1, __m512i t0lo, __m512i t0hi, __m512i t1lo, __m512i t1hi) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_permutexvar_epi8(i0, t0lo), ones);
    lo = _mm512_dpbusd_epi32(lo, _mm512_permutexvar_epi8(i1, t1lo), ones);
    __m512i hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_permutexvar_epi8(i0, t0hi));
    hi = _mm512_dpbusd_epi32(hi, ones, _mm512_permutexvar_epi8(i1, t1hi));
    return _mm512_add_epi32(lo, _mm512_slli_epi32(hi, 8));
}

static inline __m512i word_sum(__m512i v, __m512i t0lo, __m512i t0hi, __m512i t1lo, __m512i t1hi) {
    __m512i i0, i1;
    word_indices(v, &i0, &i1);
    return lookup_sum(i0, i1, t0lo, t0hi, t1lo, t1hi);
}

/* Row block `first` as the kernels below read it: its rows (nr <= 16) and their lanes, its plane words and
 * coefficients (internal.h), and the prefetch distance to the next block's word at the same place. */
typedef struct row_block {
    size_t nr, ahead;
    __mmask16 lanes;
    const uint32_t *bits;
    const float *coef;
} row_block;

static inline row_block row_block_at(const struct pbs2p_layer *L, size_t first) {
    const size_t nr = pbs2p_block_rows(L, first);
    return (row_block){nr, L->row_words * PBS2P_ROW_BLOCK, (__mmask16)((1u << nr) - 1u), pbs2p_block_bits(L, first),
                       L->coef + first * (size_t)L->groups * (size_t)L->planes};
}

/* One block of nr <= 16 rows from row `first`: y (nr lanes). P_fixed as in kernel_avx512.c (0 = read from L);
 * one_xs: every plane sums the same activation vector, so a word's tables are loaded once for all planes; ranged:
 * the planes hold only their own words (internal.h), a plane skips the others. The next row block's word at the same
 * place is prefetched into L2 as each word is loaded: each plane is its own stream. */
static inline __attribute__((always_inline)) __m512 block_dot(const struct pbs2p_layer *L, size_t first,
                                                             const uint8_t *tab, const float *d, int32_t P_fixed,
                                                             int one_xs, int ranged) {
    const size_t G = (size_t)L->groups, W = (size_t)L->words;
    const size_t P = P_fixed ? (size_t)P_fixed : (size_t)L->planes;
    const row_block B = row_block_at(L, first);
    __m512 acc = _mm512_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        const size_t gw = pbs2p_group_words(L, g);
        __m512 s[MAX_FIXED_PLANES];
        for (size_t p = 0; p < (P_fixed ? P : 1); p++) s[p] = _mm512_setzero_ps();
        if (P_fixed) {
            /* ranged: plane p's stored words [lo, hi), word w at (off + w - lo) * nr (internal.h) */
            size_t lo[MAX_FIXED_PLANES], hi[MAX_FIXED_PLANES], off[MAX_FIXED_PLANES];
            if (ranged)
                for (size_t p = 0; p < P; p++) {
                    pbs2p_plane_words(L, g, p, &lo[p], &hi[p]);
                    off[p] = pbs2p_plane_offset(L, g, p);
                }
            for (size_t w = 0; w < gw; w++) {
                __m512i t0lo, t0hi, t1lo, t1hi;
                size_t blk = g * W + w;
                if (one_xs) {
                    const uint8_t *t = tab + blk * TABLE_BYTES;
                    t0lo = _mm512_load_si512(t), t0hi = _mm512_load_si512(t + 64);
                    t1lo = _mm512_load_si512(t + 128), t1hi = _mm512_load_si512(t + 192);
                }
                for (size_t p = 0; p < P; p++) {
                    if (ranged && (w < lo[p] || w >= hi[p])) continue;
                    if (!one_xs) {
                        blk = ((size_t)L->plane_xs[p] * G + g) * W + w;
                        const uint8_t *t = tab + blk * TABLE_BYTES;
                        t0lo = _mm512_load_si512(t), t0hi = _mm512_load_si512(t + 64);
                        t1lo = _mm512_load_si512(t + 128), t1hi = _mm512_load_si512(t + 192);
                    }
                    const uint32_t *src = B.bits + (ranged ? off[p] + w - lo[p] : (g * P + p) * W + w) * B.nr;
                    __builtin_prefetch(src + B.ahead, 0, 2);
                    const __m512i I = word_sum(_mm512_maskz_loadu_epi32(B.lanes, src), t0lo, t0hi, t1lo, t1hi);
                    s[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I), _mm512_set1_ps(d[blk]), s[p]);
                }
            }
            for (size_t p = 0; p < P; p++)
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(B.lanes, B.coef + (g * P + p) * B.nr), s[p], acc);
        } else {
            for (size_t p = 0; p < P; p++) {
                size_t lo, hi;
                pbs2p_plane_words(L, g, p, &lo, &hi);
                __m512 sp = _mm512_setzero_ps();
                const size_t off = pbs2p_plane_offset(L, g, p);
                for (size_t w = lo; w < hi; w++) {
                    const size_t blk = ((size_t)L->plane_xs[p] * G + g) * W + w;
                    const uint8_t *t = tab + blk * TABLE_BYTES;
                    const uint32_t *src = B.bits + (off + w - lo) * B.nr;
                    __builtin_prefetch(src + B.ahead, 0, 2);
                    const __m512i I = word_sum(_mm512_maskz_loadu_epi32(B.lanes, src), _mm512_load_si512(t),
                                               _mm512_load_si512(t + 64), _mm512_load_si512(t + 128),
                                               _mm512_load_si512(t + 192));
                    sp = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I), _mm512_set1_ps(d[blk]), sp);
                }
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(B.lanes, B.coef + (g * P + p) * B.nr), sp, acc);
            }
        }
    }
    return acc;
}

/* ---- layers holding plane 1 as kept-order signs (internal.h): its words rebuilt by pdep (kept_signs_x86.h) ---- */

/* Row block `first` of a kept_signs layer for one token: block_dot's operations for P = 2 (the same bits), plane 1's
 * word from its ring slot. */
static inline __m512 block_dot_signs(const struct pbs2p_layer *L, size_t first, const uint8_t *tab, const float *d) {
    const size_t G = (size_t)L->groups, W = (size_t)L->words;
    const row_block B = row_block_at(L, first);
    const signs_ring ring = signs_ring_at(L, first);
    uint64_t slot[SIGNS_RING][8] __attribute__((aligned(64)));
    ring_start(&ring, slot);
    __m512 acc = _mm512_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        const size_t gw = pbs2p_group_words(L, g), b0 = g * W;
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        for (size_t w = 0; w < gw; w++) {
            const size_t blk = b0 + w;
            const uint64_t *plus = ring_step(&ring, slot, blk);
            const uint8_t *t = tab + blk * TABLE_BYTES;
            const __m512i t0lo = _mm512_load_si512(t), t0hi = _mm512_load_si512(t + 64);
            const __m512i t1lo = _mm512_load_si512(t + 128), t1hi = _mm512_load_si512(t + 192);
            const uint32_t *src = B.bits + blk * B.nr;
            __builtin_prefetch(src + B.ahead, 0, 2);
            const __m512 dv = _mm512_set1_ps(d[blk]);
            const __m512i I0 = word_sum(_mm512_maskz_loadu_epi32(B.lanes, src), t0lo, t0hi, t1lo, t1hi);
            s0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I0), dv, s0);
            const __m512i I1 = word_sum(_mm512_load_si512(plus), t0lo, t0hi, t1lo, t1hi);
            s1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I1), dv, s1);
        }
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(B.lanes, B.coef + (g * 2) * B.nr), s0, acc);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(B.lanes, B.coef + (g * 2 + 1) * B.nr), s1, acc);
    }
    return acc;
}

/* One token's exact sum of a plane word (its indices i0, i1) over the tables of activation block blk (tab: the
 * token's), scaled by the block's d into s: block_dot's operations. */
static inline __m512 token_word(__m512i i0, __m512i i1, const uint8_t *tab, size_t blk, float d, __m512 s) {
    const uint8_t *t = tab + blk * TABLE_BYTES;
    const __m512i I = lookup_sum(i0, i1, _mm512_load_si512(t), _mm512_load_si512(t + 64), _mm512_load_si512(t + 128),
                                 _mm512_load_si512(t + 192));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(I), _mm512_set1_ps(d), s);
}

/* Several tokens (TT, a constant) of one block of rows, for layers whose planes all sum one activation vector and
 * have P_fixed <= 4 planes: a word's indices are formed once for all the tokens. tab, d: token 0's tables and scales,
 * token t's at + t * tstride, + t * dstride. Each token's lanes run exactly block_dot's operations. */
static inline __attribute__((always_inline)) void block_tokens(const struct pbs2p_layer *L, size_t first,
                                                              const uint8_t *tab, size_t tstride, const float *d,
                                                              size_t dstride, __m512 *y, int TT, int32_t P_fixed) {
    const size_t G = (size_t)L->groups, W = (size_t)L->words, P = (size_t)P_fixed;
    const row_block B = row_block_at(L, first);
    for (int t = 0; t < TT; t++) y[t] = _mm512_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        const size_t gw = pbs2p_group_words(L, g);
        __m512 s[4][4];
        for (int t = 0; t < TT; t++)
            for (size_t p = 0; p < P; p++) s[t][p] = _mm512_setzero_ps();
        for (size_t w = 0; w < gw; w++) {
            const size_t blk = g * W + w;
            for (size_t p = 0; p < P; p++) {
                const uint32_t *src = B.bits + ((g * P + p) * W + w) * B.nr;
                __builtin_prefetch(src + B.ahead, 0, 2);
                __m512i i0, i1;
                word_indices(_mm512_maskz_loadu_epi32(B.lanes, src), &i0, &i1);
                for (int t = 0; t < TT; t++)
                    s[t][p] = token_word(i0, i1, tab + (size_t)t * tstride, blk, d[(size_t)t * dstride + blk], s[t][p]);
            }
        }
        for (size_t p = 0; p < P; p++) {
            const __m512 c = _mm512_maskz_loadu_ps(B.lanes, B.coef + (g * P + p) * B.nr);
            for (int t = 0; t < TT; t++) y[t] = _mm512_fmadd_ps(c, s[t][p], y[t]);
        }
    }
}

/* Several tokens (TT, a constant) of one block of a kept_signs layer: block_tokens' operations for P = 2. */
static inline __attribute__((always_inline)) void block_tokens_signs(const struct pbs2p_layer *L, size_t first,
                                                                    const uint8_t *tab, size_t tstride,
                                                                    const float *d, size_t dstride, __m512 *y,
                                                                    int TT) {
    const size_t G = (size_t)L->groups, W = (size_t)L->words;
    const row_block B = row_block_at(L, first);
    const signs_ring ring = signs_ring_at(L, first);
    uint64_t slot[SIGNS_RING][8] __attribute__((aligned(64)));
    ring_start(&ring, slot);
    for (int t = 0; t < TT; t++) y[t] = _mm512_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        const size_t gw = pbs2p_group_words(L, g), b0 = g * W;
        __m512 s[4][2];
        for (int t = 0; t < TT; t++) s[t][0] = s[t][1] = _mm512_setzero_ps();
        for (size_t w = 0; w < gw; w++) {
            const size_t blk = b0 + w;
            const uint64_t *plus = ring_step(&ring, slot, blk);
            const uint32_t *src = B.bits + blk * B.nr;
            __builtin_prefetch(src + B.ahead, 0, 2);
            __m512i i0, i1;
            word_indices(_mm512_maskz_loadu_epi32(B.lanes, src), &i0, &i1);
            for (int t = 0; t < TT; t++)
                s[t][0] = token_word(i0, i1, tab + (size_t)t * tstride, blk, d[(size_t)t * dstride + blk], s[t][0]);
            word_indices(_mm512_load_si512(plus), &i0, &i1);
            for (int t = 0; t < TT; t++)
                s[t][1] = token_word(i0, i1, tab + (size_t)t * tstride, blk, d[(size_t)t * dstride + blk], s[t][1]);
        }
        for (size_t p = 0; p < 2; p++) {
            const __m512 c = _mm512_maskz_loadu_ps(B.lanes, B.coef + (g * 2 + p) * B.nr);
            for (int t = 0; t < TT; t++) y[t] = _mm512_fmadd_ps(c, s[t][p], y[t]);
        }
    }
}

/* Several tokens (TT, a constant) of one block of rows, any layer (any planes, any activation vectors): plane by
 * plane, so only TT sums are live; a word's indices are formed once for all the tokens, each token's tables (of the
 * plane's activation vector) read per word. Each token's lanes run exactly block_dot's operations: per (g, p) the
 * words in order, then the coefficient in g-then-p order. */
static inline __attribute__((always_inline)) void block_tokens_planes(const struct pbs2p_layer *L, size_t first,
                                                                     const uint8_t *tab, size_t tstride,
                                                                     const float *d, size_t dstride, __m512 *y,
                                                                     int TT) {
    const size_t G = (size_t)L->groups, W = (size_t)L->words, P = (size_t)L->planes;
    const row_block B = row_block_at(L, first);
    for (int t = 0; t < TT; t++) y[t] = _mm512_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        for (size_t p = 0; p < P; p++) {
            size_t lo, hi;
            pbs2p_plane_words(L, g, p, &lo, &hi);
            __m512 s[4];
            for (int t = 0; t < TT; t++) s[t] = _mm512_setzero_ps();
            const size_t off = pbs2p_plane_offset(L, g, p);
            for (size_t w = lo; w < hi; w++) {
                const size_t blk = ((size_t)L->plane_xs[p] * G + g) * W + w;
                const uint32_t *src = B.bits + (off + w - lo) * B.nr;
                __builtin_prefetch(src + B.ahead, 0, 2);
                __m512i i0, i1;
                word_indices(_mm512_maskz_loadu_epi32(B.lanes, src), &i0, &i1);
                for (int t = 0; t < TT; t++)
                    s[t] = token_word(i0, i1, tab + (size_t)t * tstride, blk, d[(size_t)t * dstride + blk], s[t]);
            }
            const __m512 c = _mm512_maskz_loadu_ps(B.lanes, B.coef + (g * P + p) * B.nr);
            for (int t = 0; t < TT; t++) y[t] = _mm512_fmadd_ps(c, s[t], y[t]);
        }
    }
}

#define TOKEN_TILE 4 /* tokens whose tables are built at once and that share each loaded word */

/* One token's block of rows, any layer. */
static inline __m512 block_one(const struct pbs2p_layer *L, size_t first, const uint8_t *tab, const float *d) {
    if (L->kept_signs) return block_dot_signs(L, first, tab, d);
    const int one_xs = L->n_xs == 1;
    if (L->word_lo) /* planes over their own words: a layer with salient columns has 5 or more planes */
        switch (L->planes) {
        case 5: return one_xs ? block_dot(L, first, tab, d, 5, 1, 1) : block_dot(L, first, tab, d, 5, 0, 1);
        case 6: return one_xs ? block_dot(L, first, tab, d, 6, 1, 1) : block_dot(L, first, tab, d, 6, 0, 1);
        case 7: return one_xs ? block_dot(L, first, tab, d, 7, 1, 1) : block_dot(L, first, tab, d, 7, 0, 1);
        default: return block_dot(L, first, tab, d, 0, 0, 1);
        }
    switch (L->planes) {
    case 2: return one_xs ? block_dot(L, first, tab, d, 2, 1, 0) : block_dot(L, first, tab, d, 2, 0, 0);
    case 3: return one_xs ? block_dot(L, first, tab, d, 3, 1, 0) : block_dot(L, first, tab, d, 3, 0, 0);
    case 4: return one_xs ? block_dot(L, first, tab, d, 4, 1, 0) : block_dot(L, first, tab, d, 4, 0, 0);
    case 5: return one_xs ? block_dot(L, first, tab, d, 5, 1, 0) : block_dot(L, first, tab, d, 5, 0, 0);
    case 6: return one_xs ? block_dot(L, first, tab, d, 6, 1, 0) : block_dot(L, first, tab, d, 6, 0, 0);
    case 7: return one_xs ? block_dot(L, first, tab, d, 7, 1, 0) : block_dot(L, first, tab, d, 7, 0, 0);
    default: return block_dot(L, first, tab, d, 0, 0, 0);
    }
}

void pbs2p_rows_q8_avx512(const struct pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                          int32_t row0, int32_t row1) {
    const size_t blocks = pbs2p_bin_acts_blocks(L), tstride = blocks * TABLE_BYTES;
    const size_t tile = n_tokens < TOKEN_TILE ? n_tokens : TOKEN_TILE;
    uint8_t *tab = aligned_alloc(64, tile * tstride);
    if (!tab) { /* out of memory for the tables: the reference needs none */
        pbs2p_rows_q8_ref(L, A, n_tokens, Y, ldy, row0, row1);
        return;
    }
    const int shared = L->n_xs == 1 && L->planes <= 4 && !L->word_lo;
    const size_t r0 = (size_t)row0, r1 = (size_t)row1;
    for (size_t t0 = 0; t0 < n_tokens; t0 += tile) {
        const size_t tt = n_tokens - t0 < tile ? n_tokens - t0 : tile;
        for (size_t t = 0; t < tt; t++) {
            const pbs2p_q8_acts At = pbs2p_q8_acts_at(A, t0 + t);
            build_tables(&At, blocks, tab + t * tstride);
        }
        const float *d = A->d + t0 * (size_t)A->blocks;
        for (size_t first = r0 - r0 % PBS2P_ROW_BLOCK; first < r1; first += PBS2P_ROW_BLOCK) {
            __m512 y[TOKEN_TILE];
            if (L->kept_signs && tt == TOKEN_TILE)
                block_tokens_signs(L, first, tab, tstride, d, (size_t)A->blocks, y, TOKEN_TILE);
            else if (shared && tt == TOKEN_TILE && L->planes == 2)
                block_tokens(L, first, tab, tstride, d, (size_t)A->blocks, y, TOKEN_TILE, 2);
            else if (shared && tt == TOKEN_TILE && L->planes == 3)
                block_tokens(L, first, tab, tstride, d, (size_t)A->blocks, y, TOKEN_TILE, 3);
            else if (shared && tt == TOKEN_TILE)
                block_tokens(L, first, tab, tstride, d, (size_t)A->blocks, y, TOKEN_TILE, 4);
            else if (tt == TOKEN_TILE)
                block_tokens_planes(L, first, tab, tstride, d, (size_t)A->blocks, y, TOKEN_TILE);
            else
                for (size_t t = 0; t < tt; t++) y[t] = block_one(L, first, tab + t * tstride, d + t * (size_t)A->blocks);
            const size_t lo = first < r0 ? r0 - first : 0;
            const size_t hi = r1 - first < PBS2P_ROW_BLOCK ? r1 - first : PBS2P_ROW_BLOCK;
            const __mmask16 keep = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
            for (size_t t = 0; t < tt; t++) _mm512_mask_storeu_ps(Y + (t0 + t) * ldy + first, keep, y[t]);
        }
    }
    free(tab);
}
#endif
