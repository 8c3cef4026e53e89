/* internal.h — libpbs2p internals shared by the format code, the prepared layout and the kernel variants. */
#ifndef PBS2P_INTERNAL_H
#define PBS2P_INTERNAL_H

#include "pbs2p.h"

#include <assert.h>
#include <limits.h>
#include <stdint.h>

/* The on-disk format is bytes and little-endian float16; these hold on every supported machine. */
static_assert(CHAR_BIT == 8, "pbs2p streams are byte strings of 8 bits");
static_assert(sizeof(uint16_t) == 2, "float16 scales are stored as 2-byte words");
static_assert(sizeof(float) == 4, "kernels compute in IEEE float32");

/* Floats of zero padding after each activation vector, so a SIMD load that runs past a scale
 * group's last column (at most 15 floats) never leaves the buffer. */
#define PBS2P_XS_PAD 64

/* Rows per block of the prepared layout: a 512-bit register holds one 32-bit word of each of 16 rows. */
#define PBS2P_ROW_BLOCK 16

/* The prepared (in-memory, never on disk) layer.
 * Every weight row i and scale group g is a set of P bit planes over the group's columns:
 *   plane 2*ri   : kept columns of stored region ri,            coefficient mu - alpha (- alpha2 for salient)
 *   plane 2*ri+1 : kept columns of region ri with sign +1,      coefficient 2 * alpha
 *   plane 2*nreg : kept salient columns with plane-1 sign +1,   coefficient 2 * alpha2   (only with salient)
 * so y_i = sum_g sum_p coef[i,g,p] * sum_{j in g, bit p of j} xs[plane_xs[p]][j],
 * since alpha*s + mu summed over a region = 2*alpha*sum(x over s=+1) + (mu - alpha)*sum(x over kept).
 *
 * Rows are stored in blocks of PBS2P_ROW_BLOCK (the last block holds the remaining nr = R mod 16 rows),
 * interleaved inside a block: bits (block, G, P, words, nr) and coef (block, G, P, nr), so the 16 rows'
 * word w of plane (g, p) are one contiguous vector (the AVX-512 GEMV's lanes) and there is no padding:
 * the layout holds exactly R * G * P * words bit words and R * G * P coefficients. Use the accessors below.
 *
 * A layer with salient columns is held with its columns permuted inside each scale group: the group's salient columns
 * first, then the others, each in ascending order (perm[c] = the file's column at prepared column c). The salient
 * region's planes (0, 1 and 2 * nreg) then have set bits only in the group's first words and the other regions' only
 * in its last ones, and the products on int8 activations read plane (g, p) over its words [word_lo, word_hi) alone
 * (the rest would be zero and are not stored): on the paper structure (42 % salient columns on SmolLM2, groups of 128
 * columns) 65 % of the 7 planes' words. The activations are permuted to match (gemm.c). Such a layer's row block holds
 * its planes' stored words one after another, plane (g, p) from word word_off[g, p] of row_words per row on: its word
 * w (word_lo <= w < word_hi) is word w - word_lo there. Without salient columns perm, word_lo, word_hi and word_off are
 * NULL and every plane has its W words, word w at w.
 *
 * A model's layer whose every 32-column word keeps exactly 16 columns (one region, no salient columns, N:M with
 * M = 2 N, the scale groups and the row whole words: pbs2p_kept_signs_fit) may hold plane 1 as the word's kept-order
 * signs instead (pbs2p_layer_prepare_as, PBS2P_PREPARE_KEPT_SIGNS; kept_signs = 1): the file's own sign bits, 16 per
 * word, from which a kernel rebuilds the +1 word by depositing them into the kept word's set bits (pbs2p_deposit32,
 * BMI2's pdep). 1.5 bits per weight instead of the planes' 2. A row block then holds plane 0's words (G, W, nr) as
 * uint32, then the signs (G, W, nr) as uint16 (pbs2p_block_signs); row_words = G W + ceil(G W / 2), and bits has
 * PBS2P_KEPT_SIGNS_SLACK bytes more, so a kernel may read the signs of a row pair past an odd last row. Only the int8
 * products read it (pbs2p_plane_word; the float kernels refuse such a layer). */
struct pbs2p_layer {
    int32_t rows, cols, n, m, group_size, groups, split, regions;
    int32_t has_salient, has_mu, has_col_scale;
    int32_t planes;      /* P = 2 * regions + has_salient */
    int32_t words;       /* uint32 words per plane per scale group = ceil(min(group_size, cols) / 32) */
    int32_t n_xs;        /* activation vectors: regions with col_scale (x * col_scale[r]), else 1 */
    int32_t *plane_xs;   /* (P,) activation vector each plane sums */
    uint32_t *bits;      /* see above; bit c of word w = column g*group_size + 32w + c */
    float *coef;         /* see above, float32 */
    float *col_scale;    /* (regions, K) float32, in prepared column order, or NULL */
    int32_t *perm;       /* (K,) the file's column at each prepared column, or NULL (the identity) */
    int32_t *word_lo, *word_hi; /* (G, P) the words of plane (g, p) that are stored, or NULL (all W) */
    int32_t *word_off;   /* (G, P) where plane (g, p)'s stored words start in a row's words, or NULL: (g P + p) W */
    size_t row_words;    /* bit words per row: G * P * W, or fewer with word ranges, or G W + ceil(G W / 2) */
    int32_t kept_signs;  /* plane 1 held as kept-order signs (see above) */
};

#define PBS2P_KEPT_SIGNS_SLACK 64

/* Rows in row i's block (16, or fewer in the last block): the stride between its consecutive words. */
static inline size_t pbs2p_block_rows(const struct pbs2p_layer *L, size_t i) {
    size_t first = i - i % PBS2P_ROW_BLOCK, left = (size_t)L->rows - first;
    return left < PBS2P_ROW_BLOCK ? left : PBS2P_ROW_BLOCK;
}

/* Where plane (g, p)'s first stored word lies among a row's row_words (see above). */
static inline size_t pbs2p_plane_offset(const struct pbs2p_layer *L, size_t g, size_t p) {
    const size_t gp = L->kept_signs ? g : g * (size_t)L->planes + p; /* kept_signs: plane 0 alone is held as words */
    return L->word_off ? (size_t)L->word_off[gp] : gp * (size_t)L->words;
}

/* Row i's plane p in scale group g, from its first stored word (pbs2p_plane_words' lo; 0 without word ranges): word
 * w is at [(w - lo) * pbs2p_block_rows(L, i)]. */
static inline const uint32_t *pbs2p_plane_bits(const struct pbs2p_layer *L, size_t i, size_t g, size_t p) {
    const size_t first = i - i % PBS2P_ROW_BLOCK;
    return L->bits + first * L->row_words + pbs2p_plane_offset(L, g, p) * pbs2p_block_rows(L, i) + i % PBS2P_ROW_BLOCK;
}

/* Row block `first`'s words: plane (g, p) word w at + (pbs2p_plane_offset + w - lo) * its rows. */
static inline const uint32_t *pbs2p_block_bits(const struct pbs2p_layer *L, size_t first) {
    return L->bits + first * L->row_words;
}

/* A kept_signs layer's row block `first`: the signs of word w of scale group g at [(g W + w) * nr + row % 16]. */
static inline const uint16_t *pbs2p_block_signs(const struct pbs2p_layer *L, size_t first) {
    return (const uint16_t *)(pbs2p_block_bits(L, first) + (size_t)L->groups * (size_t)L->words *
                                                               pbs2p_block_rows(L, first));
}

/* Row i's kept-order signs (a kept_signs layer) in scale group g: word w's at [w * pbs2p_block_rows(L, i)]. */
static inline const uint16_t *pbs2p_plane_signs(const struct pbs2p_layer *L, size_t i, size_t g) {
    return pbs2p_block_signs(L, i - i % PBS2P_ROW_BLOCK) + g * (size_t)L->words * pbs2p_block_rows(L, i) +
           i % PBS2P_ROW_BLOCK;
}

/* The set bits of mask, lowest first, given the low bits of v in turn (BMI2's pdep). */
static inline uint32_t pbs2p_deposit32(uint32_t v, uint32_t mask) {
    uint32_t out = 0;
    for (; mask; mask &= mask - 1, v >>= 1) out |= (v & 1u) << __builtin_ctz(mask);
    return out;
}

/* The GEMV kernels read a block's planes in memory order (the layout above) and prefetch the line
 * PBS2P_STREAM_AHEAD bytes past each word they load. With the hardware prefetcher alone a layer that is not in a
 * cache ran far below its in-cache speed (4096x11008 compact 4:8 prepared 80 times, 0.9 GB cycled, one thread:
 * AVX-512 1.14 -> 0.98 ms a layer, AVX2 4.3-4.7 -> 1.6 ms; bench/results/kernels.md, 'gemv, from memory'); 512,
 * 1024 and 2048 bytes ahead were alike, a non-temporal prefetch slower. The address is computed in integers, as it
 * may lie past the layer's end (a prefetch never faults). */
#define PBS2P_STREAM_AHEAD 1024
static inline void pbs2p_stream_ahead(const uint32_t *at) {
    __builtin_prefetch((const void *)((uintptr_t)at + PBS2P_STREAM_AHEAD), 0, 3);
}

/* Words of scale group g that hold columns: ceil(len / 32) <= L->words (the last group may be short). */
static inline size_t pbs2p_group_words(const struct pbs2p_layer *L, size_t g) {
    const size_t K = (size_t)L->cols, gs = (size_t)L->group_size, c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
    return (len + 31) / 32;
}

/* The stored words [*lo, *hi) of plane p in scale group g: the ones every kernel reads. */
static inline void pbs2p_plane_words(const struct pbs2p_layer *L, size_t g, size_t p, size_t *lo, size_t *hi) {
    if (L->word_lo) {
        *lo = (size_t)L->word_lo[g * (size_t)L->planes + p];
        *hi = (size_t)L->word_hi[g * (size_t)L->planes + p];
    } else {
        *lo = 0;
        *hi = pbs2p_group_words(L, g);
    }
}

/* Word w (lo <= w < hi of pbs2p_plane_words) of row i's plane p in scale group g, however the layer holds it. */
static inline uint32_t pbs2p_plane_word(const struct pbs2p_layer *L, size_t i, size_t g, size_t p, size_t w) {
    const size_t nr = pbs2p_block_rows(L, i);
    if (L->kept_signs && p == 1)
        return pbs2p_deposit32(pbs2p_plane_signs(L, i, g)[w * nr], pbs2p_plane_bits(L, i, g, 0)[w * nr]);
    size_t lo, hi;
    pbs2p_plane_words(L, g, p, &lo, &hi);
    return pbs2p_plane_bits(L, i, g, p)[(w - lo) * nr];
}

/* Coefficient of row i, scale group g, plane p. */
static inline float pbs2p_plane_coef(const struct pbs2p_layer *L, size_t i, size_t g, size_t p) {
    const size_t GP = (size_t)L->groups * (size_t)L->planes, first = i - i % PBS2P_ROW_BLOCK;
    return L->coef[first * GP + (g * (size_t)L->planes + p) * pbs2p_block_rows(L, i) + i % PBS2P_ROW_BLOCK];
}

/* `width` (<= 32 - c % 32) bits of a plane from column c of its group on: b = pbs2p_plane_bits(...), nr its stride. */
static inline uint32_t pbs2p_plane_field(const uint32_t *b, size_t nr, size_t c, int width) {
    uint32_t w = b[(c / 32) * nr] >> (c % 32);
    return width >= 32 ? w : w & ((1u << width) - 1u);
}

/* A kernel: rows [row0, row1) of Y (n_tokens, ldy) from the prepared activations
 * xs (n_tokens, n_xs, cols + PBS2P_XS_PAD). Every variant has exactly this signature, twice: a GEMV
 * kernel (masked sums of x per bit plane) and a GEMM kernel (weights decoded once per column block and
 * reused by several tokens). The reference serves both. Each output element is computed by one call
 * in a fixed order, so results depend neither on threads nor, for GEMM, on the other tokens. */
typedef void (*pbs2p_rows_fn)(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                              float *Y, size_t ldy, int32_t row0, int32_t row1);

void pbs2p_rows_ref(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                    float *Y, size_t ldy, int32_t row0, int32_t row1);
#ifdef PBS2P_HAVE_AVX2
void pbs2p_rows_avx2(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                     float *Y, size_t ldy, int32_t row0, int32_t row1);
void pbs2p_gemm_rows_avx2(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                          float *Y, size_t ldy, int32_t row0, int32_t row1);
#endif
#ifdef PBS2P_HAVE_AVX512
void pbs2p_rows_avx512(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                       float *Y, size_t ldy, int32_t row0, int32_t row1);
void pbs2p_gemm_rows_avx512(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                            float *Y, size_t ldy, int32_t row0, int32_t row1);
#endif
#ifdef PBS2P_HAVE_NEON
void pbs2p_rows_neon(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                     float *Y, size_t ldy, int32_t row0, int32_t row1);
void pbs2p_gemm_rows_neon(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                          float *Y, size_t ldy, int32_t row0, int32_t row1);
#endif

/* ---- dense rows (dense_ref.c, dense_<variant>.c): the token embedding, the head and the linears of the grid
 * tiers (docs/FORMAT.md §10) ---- */

#define PBS2P_Q8_0_BLOCK 32   /* ggml Q8_0: (float16 d, int8 q[32]) per 32 values, value = d * q */
#define PBS2P_Q8_0_BYTES 34
#define PBS2P_Q4_0_BLOCK 32   /* ggml Q4_0: (float16 d, uint8 qs[16]) per 32 values, q[j] = qs[j] & 15, */
#define PBS2P_Q4_0_BYTES 18   /* q[j + 16] = qs[j] >> 4, value = d * (q - 8) */
/* Our blocks of 64 (FORMAT.md §10): float16 d, float16 m, uint8 qs[16] (q[16s + i] bits 0-1 at bits 2s of qs[i]),
 * for q3 also uint8 qh[8] (q's bit 2 for j at bit j % 8 of qh[j / 8]); value = (d * q) + m. Their type ids are ours,
 * above every ggml id, and never written to a file: the file says the tier in pbs2p.linear.tier. */
#define PBS2P_DENSE_Q2_G64 1002
#define PBS2P_DENSE_Q3_G64 1003
#define PBS2P_G64_BLOCK 64
#define PBS2P_Q2_G64_BYTES 20
#define PBS2P_Q3_G64_BYTES 28
/* Our two-level blocks (FORMAT.md §10): a row starts with float16 D, float16 M (PBS2P_S16_HEADER bytes), then blocks of
 * 64 values: uint8 sc[4], sub-block s (values 16s .. 16s + 15) taking scale code sc[s] & 15 and min code sc[s] >> 4,
 * then the codes, q2 / q3 laid out as our blocks of 64 (qs[16] from byte 4 on, q3's qh[8] from byte 20), q4 as two
 * Q4_0 blocks' qs[16] (q[32h + i] = qs[16h + i] & 15, q[32h + 16 + i] = qs[16h + i] >> 4). value = (d * q) + m with
 * d = D * sc and m = -(M * mc), both exact in float32. */
#define PBS2P_DENSE_Q2_S16 1012
#define PBS2P_DENSE_Q3_S16 1013
#define PBS2P_DENSE_Q4_S16 1014
#define PBS2P_S16_HEADER 4
#define PBS2P_S16_SUB 16
#define PBS2P_Q2_S16_BYTES 20
#define PBS2P_Q3_S16_BYTES 28
#define PBS2P_Q4_S16_BYTES 36
static inline int pbs2p_dense_s16(int32_t type) {
    return type == PBS2P_DENSE_Q2_S16 || type == PBS2P_DENSE_Q3_S16 || type == PBS2P_DENSE_Q4_S16;
}
/* Where weight block w of a row of our blocks of 64 (the g64 and two-level types) starts, from the row's start:
 * inline, as every kernel asks it once per block (pbs2p_dense_block is for the loaders). */
static inline size_t pbs2p_our_block_at(int32_t type, size_t w) {
    switch (type) {
    case PBS2P_DENSE_Q3_G64: return w * PBS2P_Q3_G64_BYTES;
    case PBS2P_DENSE_Q2_S16: return PBS2P_S16_HEADER + w * PBS2P_Q2_S16_BYTES;
    case PBS2P_DENSE_Q3_S16: return PBS2P_S16_HEADER + w * PBS2P_Q3_S16_BYTES;
    case PBS2P_DENSE_Q4_S16: return PBS2P_S16_HEADER + w * PBS2P_Q4_S16_BYTES;
    default: return w * PBS2P_Q2_G64_BYTES;
    }
}
/* Code j (0..63) of one of our blocks of 64 whose qs[16] start at qs (q3: qh[8] at qs + 16), scalar (the references). */
static inline int pbs2p_g64_code(const uint8_t *qs, int q3, int j) {
    const int q = (qs[j & 15] >> (2 * (j >> 4))) & 3;
    return q3 ? q | ((qs[16 + (j >> 3)] >> (j & 7)) & 1) << 2 : q;
}
/* Code j (0..63) of one of our two-level blocks of 64 at p (its sc[4] first). */
static inline int pbs2p_s16_code(int32_t type, const uint8_t *p, int j) {
    if (type == PBS2P_DENSE_Q4_S16) return (p[4 + 16 * (j >> 5) + (j & 15)] >> (4 * ((j >> 4) & 1))) & 15;
    return pbs2p_g64_code(p + 4, type == PBS2P_DENSE_Q3_S16, j);
}

/* A row-major matrix in a ggml layout or one of ours, read in place from the file mapping. */
typedef struct pbs2p_dense {
    const uint8_t *data;
    int32_t type;        /* PBS2P_GGML_F16, _Q8_0, _Q4_0 or PBS2P_DENSE_*; cols a multiple of its block */
    size_t row_bytes;
    int32_t rows, cols;
} pbs2p_dense;

/* (values, bytes) of one block of a dense type; 0 for a type the dense rows do not read. */
int pbs2p_dense_block(int32_t type, int32_t *values, size_t *bytes);
/* Bytes of a row of `cols` values (a multiple of the type's block): its blocks and a two-level type's header. */
size_t pbs2p_dense_row_bytes(int32_t type, int32_t cols);

/* The tier name (pbs2p.linear.tier) of a dense type ("q4_0", "q4_s16", ...), or NULL for a type no tier stores. */
const char *pbs2p_dense_tier_name(int32_t type);
/* The tier of linear `base` of a pbs2p file (pbs2p.linear.tier; absent: every linear packed): *dense = 0 for the
 * packed tier, else 1 with *out the linear's matrix in place in the mapping (<base>.weight of the tier's ggml type,
 * or our blocks <base>.pbs2p.q), its type, shape and block divisibility checked. Statuses as pbs2p_gguf_layer_desc:
 * PBS2P_ERR_UNSUPPORTED for a tier this library does not know. */
pbs2p_status pbs2p_gguf_linear_tier(const pbs2p_gguf *f, const char *base, int *dense, pbs2p_dense *out);

/* The token embedding / head `base` ("token_embd", "output") of a file whose pbs2p.embedding.tier names one of our
 * block tiers: *out the matrix <base>.pbs2p.q in place, width `cols`, its type and row bytes checked.
 * PBS2P_ERR_NOT_FOUND without the key (the embedding is <base>.weight of a ggml type) or without the tensor (an
 * untied head is absent: tied); PBS2P_ERR_FORMAT for a <base>.weight beside the key, a wrong type or shape. */
pbs2p_status pbs2p_gguf_embedding_blocks(const pbs2p_gguf *f, const char *base, int32_t cols, pbs2p_dense *out);

/* The pairwise total of eight running sums, ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)): the order the
 * reference products (pbs2p_dot_f32, the integer dense products below) and every variant that keeps its lanes finish in. */
static inline float pbs2p_total8(const float a[8]) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* x . y over n floats: 8 running sums over k = 8i + lane (a fixed order the compiler may vectorize), a pairwise
 * total (pbs2p_total8), then the tail in order. The reference dense rows use it. */
float pbs2p_dot_f32(const float *x, const float *y, int32_t n);

/* Row r of W as float32 into out[0..cols): exact (every F16 value and every d * q product is a float32). */
void pbs2p_dense_row(const pbs2p_dense *W, int32_t r, float *out);

/* Rows of a dense matrix a variant decodes at once (dense_tile.h): its scratch holds PBS2P_DENSE_ROWS * cols floats. */
#define PBS2P_DENSE_ROWS 4

/* Y[t * ldy + r] = <X[t * ldx .. + cols), row r of W> for t < n_tokens, r in [row0, row1), W an F16 matrix (the
 * reference takes any type). scratch: PBS2P_DENSE_ROWS * cols floats. Every variant decodes a row exactly
 * (pbs2p_dense_row) and then forms each dot product in a fixed order of its own, so a result depends neither on
 * threads nor on the other tokens. The other types run as integer products (below). */
typedef void (*pbs2p_dense_fn)(const pbs2p_dense *W, const float *X, size_t n_tokens, size_t ldx,
                               float *Y, size_t ldy, int32_t row0, int32_t row1, float *scratch);

void pbs2p_dense_rows_ref(const pbs2p_dense *W, const float *X, size_t n_tokens, size_t ldx,
                          float *Y, size_t ldy, int32_t row0, int32_t row1, float *scratch);
#ifdef PBS2P_HAVE_AVX2
void pbs2p_dense_rows_avx2(const pbs2p_dense *W, const float *X, size_t n_tokens, size_t ldx,
                           float *Y, size_t ldy, int32_t row0, int32_t row1, float *scratch);
#endif
#ifdef PBS2P_HAVE_AVX512
void pbs2p_dense_rows_avx512(const pbs2p_dense *W, const float *X, size_t n_tokens, size_t ldx,
                             float *Y, size_t ldy, int32_t row0, int32_t row1, float *scratch);
#endif
#ifdef PBS2P_HAVE_NEON
void pbs2p_dense_rows_neon(const pbs2p_dense *W, const float *X, size_t n_tokens, size_t ldx,
                           float *Y, size_t ldy, int32_t row0, int32_t row1, float *scratch);
#endif

/* ---- integer dense products (acts_q8.c, qdense_ref.c, qdense_<variant>.c): every block type but F16 ----
 * The activations of a product are quantized once, in blocks of 32 (acts_q8.c), and each output is
 *   y = sum over activation blocks b of  term_b,   term_b = (dw * d_b) * I_b  [+ m * s_b for our blocks of 64]
 * with I_b the exact integer dot of the weight codes (Q4_0: q - 8) and the activation codes of block b, dw (and m)
 * the scale (and min) of the weight block holding b, d_b and s_b = d_b * sum of codes the activation block's. The
 * terms are summed in a fixed order: acc[b % 8] += term_b for b = 0, 1, ..., then
 * ((acc0 + acc1) + (acc2 + acc3)) + ((acc4 + acc5) + (acc6 + acc7)), each operation one float32 rounding. Every
 * variant forms exactly these operations, so every variant gives the same bits, alone or in a batch.
 * Our two-level blocks (scale D * sc and min -(M * mc) per sub-block of 16) keep the row's D and M out of the terms:
 * with T_b = sc0 I0 + sc1 I1 (I0, I1 the integer dots of the block's two halves, exact), each block adds
 *   accT[b % 8] = fma(d_b, T_b, accT[b % 8]),   accZ[b % 8] = fma(mc1, sh_b, fma(mc0, sl_b, accZ[b % 8]))
 * (sl_b, sh_b = d_b * the code sums of the activation block's halves) and y = (D * totT) - (M * totZ), totT and
 * totZ the pairwise totals above: per token and block, no more float work than Q4_0's term. */
#define PBS2P_ACT_BLOCK 32

typedef struct pbs2p_q8_acts {
    int8_t *q;            /* (T, cols) codes */
    float *d, *s;         /* (T, blocks): scale, scale * code sum */
    float *sl, *sh;       /* (T, blocks): d * code sum of the block's first 16 codes, of its last 16 (two-level) */
    int32_t *sum;         /* (T, blocks): code sum */
    int32_t cols, blocks; /* blocks = cols / 32 */
} pbs2p_q8_acts;

/* Bytes of the quantized activations of (n_tokens, cols) floats; cols a multiple of 32. */
size_t pbs2p_q8_acts_bytes(size_t n_tokens, int32_t cols);
/* *A = the quantized activations of n_tokens tokens in mem (pbs2p_q8_acts_bytes, float-aligned), still to be filled. */
void pbs2p_q8_acts_init(void *mem, size_t n_tokens, int32_t cols, pbs2p_q8_acts *A);
/* Quantizes tokens [t0, t1) of X (n_tokens, cols) into A; each token on its own, so threads may fill disjoint ranges.
 * A block holding a NaN or an infinity gets d = NaN, so what it multiplies is NaN, as float products would be. */
void pbs2p_q8_acts_quantize(const float *X, size_t t0, size_t t1, const pbs2p_q8_acts *A);
/* The same, SSE2 or plain C (the definition), and with AVX-512 F + BW where compiled in; pbs2p_q8_acts_quantize runs
 * the current kernel variant's (pbs2p_kernels.quantize: AVX-512 under the avx512 variant), so kernels held to AVX2
 * are measured as an AVX2 machine runs them. */
typedef void (*pbs2p_q8_quantize_fn)(const float *X, size_t t0, size_t t1, const pbs2p_q8_acts *A);
void pbs2p_q8_acts_quantize_ref(const float *X, size_t t0, size_t t1, const pbs2p_q8_acts *A);
#ifdef PBS2P_HAVE_AVX512
void pbs2p_q8_acts_quantize_avx512(const float *X, size_t t0, size_t t1, const pbs2p_q8_acts *A);
#endif
/* The activations from token t on. */
static inline pbs2p_q8_acts pbs2p_q8_acts_at(const pbs2p_q8_acts *A, size_t t) {
    const size_t nb = (size_t)A->blocks;
    return (pbs2p_q8_acts){A->q + t * (size_t)A->cols, A->d + t * nb,  A->s + t * nb,   A->sl + t * nb,
                           A->sh + t * nb,               A->sum + t * nb, A->cols, A->blocks};
}

/* Y[t * ldy + r] = the product of token t and row r of W (any type but F16) for t < n_tokens, r in [row0, row1). */
typedef void (*pbs2p_qdense_fn)(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                                int32_t row0, int32_t row1);
void pbs2p_qdense_rows_ref(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                           int32_t row0, int32_t row1);
#ifdef PBS2P_HAVE_AVX2
void pbs2p_qdense_rows_avx2(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                            int32_t row0, int32_t row1);
#endif
#ifdef PBS2P_HAVE_AVX512_VNNI
/* AVX-512 VNNI (F, BW, VNNI): the avx512 variant's on CPUs that have VNNI. */
void pbs2p_qdense_rows_avx512(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                              int32_t row0, int32_t row1);
#endif
#ifdef PBS2P_HAVE_AVX2
/* From this many tokens on, pbs2p_qdense_rows_avx2 runs the lanes kernel (qdense_lanes_avx2.c): for fewer its gathers
 * of weight codes cost more than they save (one token: the default export decodes at 110-114 tok/s with it, 115-123
 * with the row loops; 2 threads, a Xeon). dispatch.c keeps the VNNI products, which gather too, to as many tokens
 * where gathers are slow. */
#define AVX2_LANES_MIN_TOKENS 4
/* The AVX2 products for several tokens (pbs2p_qdense_rows_avx2 takes it from AVX2_LANES_MIN_TOKENS on). */
void pbs2p_qdense_lanes_avx2(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                             int32_t row0, int32_t row1);
#endif
#ifdef PBS2P_HAVE_NEON
void pbs2p_qdense_rows_neon(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                            int32_t row0, int32_t row1);
#endif
#ifdef PBS2P_HAVE_NEON_DOTPROD
/* Armv8.2 dot product (sdot): the neon variant's on CPUs that have it (Linux: HWCAP_ASIMDDP). */
void pbs2p_qdense_rows_dotprod(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                               int32_t row0, int32_t row1);
#endif

/* ---- binary layers on int8 activations (gemm.c, kernel_q8_ref.c, kernel_q8_<variant>.c): a model's products ----
 * A model multiplies its packed layers as llama.cpp multiplies its ternary and k-quant types: on the tokens'
 * activations quantized once (acts_q8.c, as for the integer dense products) in blocks that are the prepared layout's
 * plane words, block (r, g, w) = columns [g gs + 32 w, g gs + 32 w + 32) of activation vector r, cut at the group's
 * end and zero past it (L->n_xs * L->groups * L->words blocks per token: pbs2p_bin_acts_blocks). Each row's plane
 * sums are then exact integers and everything after them is a fixed sequence of float32 operations, per token:
 *   I[g, p, w] = sum of the codes of block (plane_xs[p], g, w) over the set bits of row i's plane p word w,
 *   s[g, p] = fmaf((float)I[g, p, w], d[plane_xs[p], g, w], s[g, p]) for w < pbs2p_group_words(L, g) from 0,
 *   y_i = fmaf(coef[i, g, p], s[g, p], y_i) for g = 0, 1, ..., p = 0, 1, ... (p inner) from 0,
 * each fmaf one rounding, so every variant gives the reference's bits on any thread count and any batch: a prompt's
 * token is the same token decoded alone. Against the float kernels above the difference is the activations'
 * rounding (|d| / 2 per code), as for llama.cpp's types. A: n_tokens tokens of pbs2p_bin_acts_blocks blocks. */
typedef void (*pbs2p_rows_q8_fn)(const struct pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y,
                                 size_t ldy, int32_t row0, int32_t row1);
/* Activation blocks of one token of a layer's product: n_xs * G * W. */
static inline size_t pbs2p_bin_acts_blocks(const struct pbs2p_layer *L) {
    return (size_t)L->n_xs * (size_t)L->groups * (size_t)L->words;
}
void pbs2p_rows_q8_ref(const struct pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                       int32_t row0, int32_t row1);
#ifdef PBS2P_HAVE_AVX2
/* Float tables of the codes (kernel_avx2.c): the avx2 variant's, and the avx512 variant's without VBMI + VNNI; from
 * AVX2_Q8_TOKENS_MIN tokens on it runs pbs2p_rows_q8_tokens_avx2 (kernel_q8_tokens_avx2.c: each plane word expanded
 * to bytes once for several tokens, vpmaddubsw products). */
#define AVX2_Q8_TOKENS_MIN 4
void pbs2p_rows_q8_avx2(const struct pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                        int32_t row0, int32_t row1);
void pbs2p_rows_q8_tokens_avx2(const struct pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y,
                               size_t ldy, int32_t row0, int32_t row1);
#endif
#ifdef PBS2P_HAVE_NEON
void pbs2p_rows_q8_neon(const struct pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                        int32_t row0, int32_t row1);
#endif
#if defined(PBS2P_HAVE_AVX512_VNNI) && defined(PBS2P_HAVE_AVX512_VBMI)
/* AVX-512 VBMI + VNNI (vpermb table lookups, vpdpbusd sums): the avx512 variant's on CPUs that have both. */
void pbs2p_rows_q8_avx512(const struct pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                          int32_t row0, int32_t row1);
#endif

/* Causal attention of one query q (hd,) and one head: out (hd,) = softmax(scale * q . key p) summed over value rows p
 * < n. Keys transposed: dimension d of position p at kt[d * ldk + p]; value p at v + p * ldv. scores: n floats of
 * scratch. attention_impl.h, compiled once per variant. */
typedef void (*pbs2p_attend_fn)(const float *q, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t n,
                                int32_t hd, float scale, float *scores, float *out);
void pbs2p_attend_ref(const float *q, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t n, int32_t hd,
                      float scale, float *scores, float *out);
#ifdef PBS2P_HAVE_AVX2
void pbs2p_attend_avx2(const float *q, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t n, int32_t hd,
                       float scale, float *scores, float *out);
#endif
#ifdef PBS2P_HAVE_AVX512
void pbs2p_attend_avx512(const float *q, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t n,
                         int32_t hd, float scale, float *scores, float *out);
#endif
#ifdef PBS2P_HAVE_NEON
void pbs2p_attend_neon(const float *q, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t n, int32_t hd,
                       float scale, float *scores, float *out);
#endif

/* Several queries that read one head's cache at once: query i (q[i], hd floats) over positions first[i] ..
 * first[i] + n[i] - 1 of kt / v (the layout of attend), into out[i], each bit for bit the variant's attend on its own
 * range; the key and value rows are loaded once for all of them. scores: nq rows of lds >= max n[i] floats. Any nq;
 * the kernel takes them PBS2P_ATTEND_MAX_QUERIES at a time. */
#define PBS2P_ATTEND_MAX_QUERIES 16
typedef void (*pbs2p_attend_block_fn)(int32_t nq, const float *const *q, float *const *out, const int32_t *first,
                                      const int32_t *n, const float *kt, size_t ldk, const float *v, size_t ldv,
                                      int32_t hd, float scale, float *scores, size_t lds);
void pbs2p_attend_block_ref(int32_t nq, const float *const *q, float *const *out, const int32_t *first,
                            const int32_t *n, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t hd,
                            float scale, float *scores, size_t lds);
#ifdef PBS2P_HAVE_AVX2
void pbs2p_attend_block_avx2(int32_t nq, const float *const *q, float *const *out, const int32_t *first,
                             const int32_t *n, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t hd,
                             float scale, float *scores, size_t lds);
#endif
#ifdef PBS2P_HAVE_AVX512
void pbs2p_attend_block_avx512(int32_t nq, const float *const *q, float *const *out, const int32_t *first,
                               const int32_t *n, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t hd,
                               float scale, float *scores, size_t lds);
#endif
#ifdef PBS2P_HAVE_NEON
void pbs2p_attend_block_neon(int32_t nq, const float *const *q, float *const *out, const int32_t *first,
                             const int32_t *n, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t hd,
                             float scale, float *scores, size_t lds);
#endif

/* The same over a float16 cache (keys and values as float16 bits), for nq <= PBS2P_ATTEND_F16_QUERIES queries that
 * read one head's cache over the same positions first .. first + n - 1 (a decode step's query heads of one KV head;
 * their keys and values are widened once for all): query i (q[i]) into out[i], bit for bit the variant's float32
 * attend on the widened values; scores: nq rows of lds >= n floats. The head's keys and values come in tiles of
 * PBS2P_KV_TILE positions, PBS2P_KV_SPAN tiles in a row, span_stride entries from one span of tiles to the next
 * (model_internal.h: the spans of all layers and heads lie between, so that the cache's resident part grows with the
 * positions used): a tile's keys are hd rows of PBS2P_KV_TILE (dimension d of position p at kt + pbs2p_kv_key(
 * span_stride, hd, p) + d PBS2P_KV_TILE), its values PBS2P_KV_TILE rows of hd (position p's at v + pbs2p_kv_value(
 * span_stride, hd, p)). */
#define PBS2P_ATTEND_F16_QUERIES 4
#define PBS2P_KV_TILE 32
#define PBS2P_KV_SPAN 8 /* tiles of a head in one run: 256 positions, 64 KiB of keys at hd 128 */
/* Where the tile holding position p starts (its keys, or its values). */
static inline size_t pbs2p_kv_tile(size_t span_stride, int32_t hd, int32_t p) {
    const size_t tile = (size_t)p / PBS2P_KV_TILE;
    return tile / PBS2P_KV_SPAN * span_stride + tile % PBS2P_KV_SPAN * (size_t)hd * PBS2P_KV_TILE;
}
static inline size_t pbs2p_kv_key(size_t span_stride, int32_t hd, int32_t p) {
    return pbs2p_kv_tile(span_stride, hd, p) + (size_t)p % PBS2P_KV_TILE;
}
static inline size_t pbs2p_kv_value(size_t span_stride, int32_t hd, int32_t p) {
    return pbs2p_kv_tile(span_stride, hd, p) + (size_t)p % PBS2P_KV_TILE * (size_t)hd;
}
typedef void (*pbs2p_attend_f16_fn)(int32_t nq, const float *const *q, float *const *out, const uint16_t *kt,
                                    const uint16_t *v, size_t span_stride, int32_t first, int32_t n, int32_t hd,
                                    float scale, float *scores, size_t lds);
void pbs2p_attend_f16_ref(int32_t nq, const float *const *q, float *const *out, const uint16_t *kt, const uint16_t *v,
                          size_t span_stride, int32_t first, int32_t n, int32_t hd, float scale, float *scores,
                          size_t lds);
#ifdef PBS2P_HAVE_AVX2
void pbs2p_attend_f16_avx2(int32_t nq, const float *const *q, float *const *out, const uint16_t *kt, const uint16_t *v,
                           size_t span_stride, int32_t first, int32_t n, int32_t hd, float scale, float *scores,
                           size_t lds);
#endif
#ifdef PBS2P_HAVE_AVX512
void pbs2p_attend_f16_avx512(int32_t nq, const float *const *q, float *const *out, const uint16_t *kt,
                             const uint16_t *v, size_t span_stride, int32_t first, int32_t n, int32_t hd, float scale,
                             float *scores, size_t lds);
#endif
#ifdef PBS2P_HAVE_NEON
void pbs2p_attend_f16_neon(int32_t nq, const float *const *q, float *const *out, const uint16_t *kt, const uint16_t *v,
                           size_t span_stride, int32_t first, int32_t n, int32_t hd, float scale, float *scores,
                           size_t lds);
#endif

/* float16 bits -> float32 of n values, with the variant's conversion (the one attend_f16 widens with). */
typedef void (*pbs2p_widen_fn)(const uint16_t *src, float *dst, int32_t n);
void pbs2p_widen_ref(const uint16_t *src, float *dst, int32_t n);
#ifdef PBS2P_HAVE_AVX2
void pbs2p_widen_avx2(const uint16_t *src, float *dst, int32_t n);
#endif
#ifdef PBS2P_HAVE_AVX512
void pbs2p_widen_avx512(const uint16_t *src, float *dst, int32_t n);
#endif
#ifdef PBS2P_HAVE_NEON
void pbs2p_widen_neon(const uint16_t *src, float *dst, int32_t n);
#endif

/* The selected variant's kernels, or 0 (with pbs2p_last_error set) when the forced one is unavailable. */
typedef struct pbs2p_kernels {
    pbs2p_rows_fn gemv, gemm;
    pbs2p_dense_fn dense;   /* F16 matrices */
    pbs2p_qdense_fn qdense; /* every other dense type */
    pbs2p_attend_fn attend;
    pbs2p_attend_block_fn attend_block; /* a prompt's queries, several per head */
    pbs2p_attend_f16_fn attend_f16;
    pbs2p_widen_fn widen;
    pbs2p_rows_q8_fn q8;      /* a model's products of packed layers */
    pbs2p_q8_quantize_fn quantize; /* the int8 activations of q8 and qdense */
    int q8_kept_signs;        /* q8 reads kept_signs layers at speed (the reference reads them too, slowly) */
} pbs2p_kernels;
int pbs2p_kernel_current(pbs2p_kernels *out);

/* ---- huge_pages.c: zeroed memory for the arrays a decode step streams (planes, KV cache) ---- */

/* bytes of zeroed memory, on 2 MiB pages where the system has them; NULL when out of memory. */
void *pbs2p_huge_alloc(size_t bytes);
/* Releases pbs2p_huge_alloc(bytes)'s p (the same bytes); NULL is ignored. */
void pbs2p_huge_free(void *p, size_t bytes);

/* ---- thread pool (pool.c): a model's workers, kept for its life ---- */

typedef struct pbs2p_pool pbs2p_pool;

/* A pool of n_threads - 1 workers (the caller is the n-th); *out = NULL on failure. */
pbs2p_status pbs2p_pool_new(int n_threads, pbs2p_pool **out);
/* Stops and joins the workers; NULL is ignored. */
void pbs2p_pool_free(pbs2p_pool *p);
/* Workers + the caller (1 for NULL). */
int pbs2p_pool_threads(const pbs2p_pool *p);
/* fn(jobs + i * job_size) for i < n_jobs <= pbs2p_pool_threads(p): job 0 on the calling thread, job i on worker i - 1;
 * returns when all are done. p NULL: all on the caller. One run at a time per pool (a model is single-threaded). */
void pbs2p_pool_run(pbs2p_pool *p, void (*fn)(void *), void *jobs, size_t job_size, int n_jobs);

/* A model's product of a packed layer on a pool's threads (pool NULL: the calling thread alone), with pbs2p_gemm's
 * checks, on int8 activations (q8 above; pbs2p_gemm and pbs2p_gemv multiply float activations): every variant gives
 * the same bits on any thread count, and a token in a batch the bits it gets alone. */
pbs2p_status pbs2p_gemm_pool(const pbs2p_layer *L, const float *X, size_t n_tokens, size_t x_len,
                             float *Y, size_t y_len, pbs2p_pool *pool);
/* Whether L's activation blocks are X's plain blocks of 32 (no column scales, every scale group whole blocks; both
 * presets): then activations quantized for any other such product (pbs2p_q8_acts_quantize) are L's own. */
int pbs2p_q8_plain_blocks(const pbs2p_layer *L);
/* pbs2p_gemm_pool on activations A already quantized in L's plain blocks (the caller has checked the shapes). */
pbs2p_status pbs2p_gemm_pool_q8(const pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y,
                                pbs2p_pool *pool);

/* Multiply-adds per worker thread below which another thread does not pay (gemm.c): PBS2P_MIN_WORK_PER_THREAD
 * from the environment, else 2^20 for a thread started for the call and 2^15 for a pool's waiting worker. */
size_t pbs2p_min_work_per_thread(void);
size_t pbs2p_min_work_per_pool_thread(void);

/* Record a failure message for pbs2p_last_error() and return `status`. printf-style. */
pbs2p_status pbs2p_fail(pbs2p_status status, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- format decoding (layout.c) ---- */

/* Everything needed to decode rows of one layer: code -> bitmap table and salient ranks. */
typedef struct pbs2p_decoder {
    const pbs2p_layer_desc *desc;
    pbs2p_layer_sizes sizes;
    int32_t w_mask, w_group, kept_per_row;
    uint16_t *code_value;  /* (C(m, n),) the m-bit kept bitmap of each mask code */
    int32_t n_codes;
    int32_t *sal_rank;     /* (K,) rank of column j among salient columns, -1 if not salient; NULL without salient */
    uint16_t *deposit;     /* (C(m, n) << n,) [code << n | signs]: the signs at their columns of the code's mask;
                            * NULL where that is over 65536 entries */
} pbs2p_decoder;

/* One decoded row: per column, whether kept, signs of plane 0 / 1 (+1 = 1), stored region index. */
typedef struct pbs2p_row {
    uint8_t *kept, *s0, *s1, *region; /* each (K,) */
} pbs2p_row;

pbs2p_status pbs2p_decoder_init(pbs2p_decoder *dec, const pbs2p_layer_desc *desc);
void pbs2p_decoder_free(pbs2p_decoder *dec);
pbs2p_status pbs2p_decode_row(const pbs2p_decoder *dec, int32_t i, pbs2p_row *row);
/* Whether pbs2p_decode_row_words reads the layer: one region, no salient columns, scale groups of whole 32-column
 * words (group_size a multiple of 32, or at least K). */
int pbs2p_row_words_fit(const pbs2p_layer_desc *d);
/* Row i as bit words, straight from its mask codes and signs (no column-by-column decoding), with pbs2p_decode_row's
 * checks: kept[g W + w] and pos[g W + w] (W = ceil(min(group_size, K) / 32)) hold columns g gs + 32 w .. + 31, bit c
 * for column g gs + 32 w + c: kept, and kept with sign +1 (0 past the row's end). */
pbs2p_status pbs2p_decode_row_words(const pbs2p_decoder *dec, int32_t i, uint32_t *kept, uint32_t *pos);
/* Whether a layer may be prepared with kept_signs (the layout above): pbs2p_row_words_fit, M = 2 N, K a multiple of 32. */
int pbs2p_kept_signs_fit(const pbs2p_layer_desc *d);
/* pbs2p_layer_prepare with options: PBS2P_PREPARE_KEPT_SIGNS holds plane 1 as kept-order signs where the layer fits
 * (otherwise the planes). Only the int8 products read such a layer: a model's. */
#define PBS2P_PREPARE_KEPT_SIGNS 1
pbs2p_status pbs2p_layer_prepare_as(const pbs2p_layer_desc *d, int flags, pbs2p_layer **out);
/* One malloc holding the four (K,) arrays; free(row->kept) releases it. */
pbs2p_status pbs2p_row_alloc(pbs2p_row *row, size_t K);

/* float32 -> float16 bits, rounded to nearest even; beyond the float16 range it saturates to +-65504 (a cache
 * entry stays finite), NaN stays NaN. */
static inline uint16_t pbs2p_float_to_half(float x) {
    union { float f; uint32_t u; } v = { x };
    const uint16_t sign = (uint16_t)((v.u >> 16) & 0x8000u);
    const uint32_t a = v.u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00u);            /* NaN */
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7BFFu);           /* rounds past 65504 (or inf): saturate */
    if (a < 0x38800000u) {                                             /* below 2^-14: a subnormal half or zero */
        union { uint32_t u; float f; } w = { a };
        /* w * 2^24 is the subnormal's integer mantissa; float arithmetic rounds it to nearest even */
        return (uint16_t)(sign | (uint16_t)(int32_t)__builtin_rintf(w.f * 16777216.0f));
    }
    uint32_t m = a + 0xC8000FFFu + ((a >> 13) & 1u);                  /* rebias 127 -> 15, round to nearest even */
    return (uint16_t)(sign | (m >> 13));
}

/* float16 bits -> float32, exact for every value (subnormals, inf, nan). */
static inline float pbs2p_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do { man <<= 1; e++; } while ((man & 0x400u) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FFu) << 13);
    }
    union { uint32_t u; float f; } v = { bits };
    return v.f;
}

#endif /* PBS2P_INTERNAL_H */
