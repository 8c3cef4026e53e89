/* prepare.c — builds the in-memory repacked layer (bit planes + float32 coefficients) the kernels read. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* The bytes bits holds (internal.h). */
static size_t bits_bytes(const pbs2p_layer *L) {
    return (size_t)L->rows * L->row_words * sizeof *L->bits + (L->kept_signs ? PBS2P_KEPT_SIGNS_SLACK : 0);
}

void pbs2p_layer_free(pbs2p_layer *L) {
    if (!L) return;
    free(L->plane_xs);
    pbs2p_huge_free(L->bits, bits_bytes(L));
    free(L->coef);
    free(L->col_scale);
    free(L->perm);
    free(L->word_lo);
    free(L->word_hi);
    free(L->word_off);
    free(L);
}

int32_t pbs2p_layer_rows(const pbs2p_layer *L) { return L ? L->rows : 0; }
int32_t pbs2p_layer_cols(const pbs2p_layer *L) { return L ? L->cols : 0; }

size_t pbs2p_layer_nbytes(const pbs2p_layer *L) {
    if (!L) return 0;
    size_t RG = (size_t)L->rows * (size_t)L->groups, P = (size_t)L->planes;
    return bits_bytes(L) + RG * P * sizeof *L->coef +
           (L->col_scale ? (size_t)L->regions * (size_t)L->cols * sizeof *L->col_scale : 0) +
           (L->perm ? (size_t)L->cols * sizeof *L->perm + 3 * (size_t)L->groups * P * sizeof *L->word_lo : 0);
}

static float half_at(const uint16_t *a, size_t k) { return pbs2p_half_to_float(a[k]); }

/* A layer with salient columns (internal.h): perm puts each scale group's salient columns first, and the planes'
 * stored words follow: the salient region's planes (0, 1, 2 nreg) the words holding the group's first ns columns,
 * the other regions' the words holding the rest (the word where both meet is in both); row_words their total. */
static pbs2p_status permute_salient(pbs2p_layer *L, const pbs2p_decoder *dec) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, P = (size_t)L->planes, gs = (size_t)L->group_size;
    const size_t nreg = (size_t)L->regions;
    L->perm = malloc(K * sizeof *L->perm);
    L->word_lo = malloc(G * P * sizeof *L->word_lo);
    L->word_hi = malloc(G * P * sizeof *L->word_hi);
    L->word_off = malloc(G * P * sizeof *L->word_off);
    if (!L->perm || !L->word_lo || !L->word_hi || !L->word_off)
        return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for a column order");
    L->row_words = 0;
    for (size_t g = 0; g < G; g++) {
        const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
        size_t ns = 0;
        for (size_t j = c0; j < c0 + len; j++)
            if (dec->sal_rank[j] >= 0) L->perm[c0 + ns++] = (int32_t)j;
        for (size_t j = c0, c = c0 + ns; j < c0 + len; j++)
            if (dec->sal_rank[j] < 0) L->perm[c++] = (int32_t)j;
        for (size_t p = 0; p < P; p++) {
            const int salient_plane = p < 2 || p == 2 * nreg;
            L->word_lo[g * P + p] = salient_plane ? 0 : (int32_t)(ns / 32);
            L->word_hi[g * P + p] = (int32_t)(salient_plane ? (ns + 31) / 32 : (len + 31) / 32);
            L->word_off[g * P + p] = (int32_t)L->row_words;
            L->row_words += (size_t)(L->word_hi[g * P + p] - L->word_lo[g * P + p]);
        }
    }
    return PBS2P_OK;
}

/* Word w of row i's plane (g, p) = v; a word outside the plane's stored words must be 0 (it is by construction). */
static pbs2p_status put_word(pbs2p_layer *L, size_t i, size_t g, size_t p, size_t w, uint32_t v) {
    size_t lo, hi;
    pbs2p_plane_words(L, g, p, &lo, &hi);
    if (w < lo || w >= hi)
        return v ? pbs2p_fail(PBS2P_ERR_FORMAT, "row %zu: plane %zu has bits outside its words", i, p) : PBS2P_OK;
    /* the layer is being built: the accessors' const is for the kernels */
    ((uint32_t *)pbs2p_plane_bits(L, i, g, p))[(w - lo) * pbs2p_block_rows(L, i)] = v;
    return PBS2P_OK;
}

/* dst = src's columns in the prepared order. */
static void permute_row(const pbs2p_row *src, const int32_t *perm, size_t K, pbs2p_row *dst) {
    for (size_t c = 0; c < K; c++) {
        const size_t j = (size_t)perm[c];
        dst->kept[c] = src->kept[j], dst->s0[c] = src->s0[j], dst->s1[c] = src->s1[j], dst->region[c] = src->region[j];
    }
}

/* Bit k of the result = b[k] (0 or 1), k < 32: eight bytes at a time by one multiply that gathers their low bits
 * into the top byte (byte k's bit lands at bit 56 + k; the partial products below it carry nothing into it). */
static uint32_t pack_bits32(const uint8_t *b) {
    uint32_t out = 0;
    for (int h = 0; h < 4; h++) {
        const uint8_t *p = b + 8 * h;
        const uint64_t x = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
                           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
        out |= (uint32_t)((x * 0x0102040810204080ull) >> 56) << (8 * h);
    }
    return out;
}

int pbs2p_kept_signs_fit(const pbs2p_layer_desc *d) {
    return pbs2p_row_words_fit(d) && 2 * d->n == d->m && d->cols % 32 == 0;
}

pbs2p_status pbs2p_layer_prepare(const pbs2p_layer_desc *d, pbs2p_layer **out) {
    return pbs2p_layer_prepare_as(d, 0, out);
}

pbs2p_status pbs2p_layer_prepare_as(const pbs2p_layer_desc *d, int flags, pbs2p_layer **out) {
    if (!out) return pbs2p_fail(PBS2P_ERR_NULL, "output layer pointer is NULL");
    *out = NULL;
    pbs2p_decoder dec;
    pbs2p_status st = pbs2p_decoder_init(&dec, d);
    if (st != PBS2P_OK) return st;

    pbs2p_layer *L = calloc(1, sizeof *L);
    if (!L) { pbs2p_decoder_free(&dec); return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory"); }
    const size_t R = (size_t)d->rows, K = (size_t)d->cols, G = dec.sizes.groups_per_row;
    const size_t nreg = dec.sizes.regions;
    L->rows = d->rows; L->cols = d->cols; L->n = d->n; L->m = d->m;
    L->group_size = d->group_size; L->groups = (int32_t)G; L->split = d->split; L->regions = (int32_t)nreg;
    L->has_salient = d->has_salient; L->has_mu = d->has_mu; L->has_col_scale = d->has_col_scale;
    L->planes = 2 * (int32_t)nreg + d->has_salient;
    /* a group holds at most min(group_size, cols) columns: a file's group_size above cols (valid) must not size
     * the planes (fuzzing found group_size 553648160 with 32 cols asking for 7.7 GB) */
    L->words = ((d->group_size < d->cols ? d->group_size : d->cols) + 31) / 32;
    L->n_xs = d->has_col_scale ? (int32_t)nreg : 1;
    const size_t P = (size_t)L->planes, W = (size_t)L->words;

    pbs2p_row row = {0}, prow = {0};
    uint32_t *kept_words = NULL;
    L->row_words = G * P * W;
    /* validated first (the decoder): kept_signs needs the layer's shape to be sound */
    L->kept_signs = (flags & PBS2P_PREPARE_KEPT_SIGNS) && pbs2p_kept_signs_fit(d);
    if (L->kept_signs) L->row_words = G * W + (G * W + 1) / 2;
    if (d->has_salient && (st = permute_salient(L, &dec)) != PBS2P_OK) goto done;
    L->plane_xs = malloc(P * sizeof *L->plane_xs);
    L->bits = pbs2p_huge_alloc(bits_bytes(L));
    L->coef = malloc(R * G * P * sizeof *L->coef);
    if (d->has_col_scale) L->col_scale = malloc(nreg * K * sizeof *L->col_scale);
    /* one region without salient columns (both presets' compact structure): the row's words decoded directly */
    const int words_only = pbs2p_row_words_fit(d);
    if (words_only) kept_words = malloc(2 * G * W * sizeof *kept_words);
    if (!L->plane_xs || !L->bits || !L->coef || (d->has_col_scale && !L->col_scale) || (words_only && !kept_words) ||
        pbs2p_row_alloc(&row, K) != PBS2P_OK || (d->has_salient && pbs2p_row_alloc(&prow, K) != PBS2P_OK)) {
        st = pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for a prepared %zux%zu layer (%zu bit planes)", R, K, P);
        goto done;
    }
    for (size_t p = 0; p < P; p++)
        L->plane_xs[p] = d->has_col_scale ? (int32_t)(p < 2 * nreg ? p / 2 : 0) : 0;
    if (d->has_col_scale)
        for (size_t r = 0; r < nreg; r++)
            for (size_t c = 0; c < K; c++)
                L->col_scale[r * K + c] = half_at(d->col_scale, r * K + (L->perm ? (size_t)L->perm[c] : c));

    for (size_t i = 0; i < R; i++) {
        const size_t nr = pbs2p_block_rows(L, i);
        if (words_only) {
            uint32_t *pos_words = kept_words + G * W;
            if ((st = pbs2p_decode_row_words(&dec, (int32_t)i, kept_words, pos_words)) != PBS2P_OK) goto done;
            /* kept_signs: word g W + w's 16 signs are bytes 2 (g W + w), + 1 of the row's sign stream (16 kept a word;
             * the groups before the last are whole) */
            const uint8_t *sg = d->signs + i * dec.sizes.signs_row_bytes;
            for (size_t g = 0; g < G; g++)
                for (size_t w = 0; w < W; w++) { /* the layer is being built: the accessors' const is for the kernels */
                    const size_t gw = g * W + w;
                    ((uint32_t *)pbs2p_plane_bits(L, i, g, 0))[w * nr] = kept_words[gw];
                    if (L->kept_signs) /* words past a short last group's end hold no column (and no sign) */
                        ((uint16_t *)pbs2p_plane_signs(L, i, g))[w * nr] =
                            w < pbs2p_group_words(L, g) ? (uint16_t)(sg[2 * gw] | sg[2 * gw + 1] << 8) : 0;
                    else ((uint32_t *)pbs2p_plane_bits(L, i, g, 1))[w * nr] = pos_words[gw];
                }
            goto coefficients;
        }
        if ((st = pbs2p_decode_row(&dec, (int32_t)i, &row)) != PBS2P_OK) goto done;
        if (L->perm) permute_row(&row, L->perm, K, &prow);
        const pbs2p_row *cols = L->perm ? &prow : &row; /* the row in the prepared column order */
        /* plane words 32 columns at a time, without a branch per column and one region at a time (each pass an OR
         * reduction the compiler vectorizes): region r's kept and sign words, then the salient second signs (region
         * 0). A dropped column has kept, signs and region 0 and adds nothing; the planes start zeroed (pbs2p_huge_alloc). */
        for (size_t g = 0; g < G; g++) {
            const size_t c0 = g * (size_t)d->group_size;
            const size_t len = K - c0 < (size_t)d->group_size ? K - c0 : (size_t)d->group_size;
            for (size_t w = 0; 32 * w < len; w++) {
                const size_t n = len - 32 * w < 32 ? len - 32 * w : 32, j0 = c0 + 32 * w;
                const uint8_t *kept = cols->kept + j0, *s0 = cols->s0 + j0, *s1 = cols->s1 + j0;
                const uint8_t *region = cols->region + j0;
                /* the layer is being built: the accessors' const is for the kernels */
                if (nreg == 1 && n == 32) { /* one region (no salient columns, no split), a whole word: s0 is 0 where dropped */
                    ((uint32_t *)pbs2p_plane_bits(L, i, g, 0))[w * nr] = pack_bits32(kept);
                    ((uint32_t *)pbs2p_plane_bits(L, i, g, 1))[w * nr] = pack_bits32(s0);
                    continue;
                }
                for (size_t r = 0; r < nreg; r++) {
                    uint32_t kw = 0, sw = 0;
                    for (size_t c = 0; c < n; c++) {
                        const uint32_t in = (uint32_t)(kept[c] & (region[c] == r));
                        kw |= in << c;
                        sw |= (in & s0[c]) << c;
                    }
                    if ((st = put_word(L, i, g, 2 * r, w, kw)) != PBS2P_OK ||
                        (st = put_word(L, i, g, 2 * r + 1, w, sw)) != PBS2P_OK)
                        goto done;
                }
                if (d->has_salient) {
                    uint32_t s1w = 0;
                    for (size_t c = 0; c < n; c++) s1w |= (uint32_t)(kept[c] & s1[c] & (region[c] == 0)) << c;
                    if ((st = put_word(L, i, g, 2 * nreg, w, s1w)) != PBS2P_OK) goto done;
                }
            }
        }
    coefficients:
        for (size_t g = 0; g < G; g++) {
            float cf[2 * 256 + 1]; /* P <= 2 * regions + 1, regions = split + salient <= 256 */
            double a2 = d->has_salient ? half_at(d->alpha2, i * G + g) : 0.0;
            for (size_t r = 0; r < nreg; r++) {
                double a = half_at(d->alpha, (r * R + i) * G + g);
                double mu = d->has_mu ? half_at(d->mu, (r * R + i) * G + g) : 0.0;
                /* region r contributes 2a*sum(x: s0=+1) + (mu - a)*sum(x: kept); salient also 2a2*sum(x: s1=+1) - a2*sum(x: kept) */
                cf[2 * r] = (float)(mu - a - (d->has_salient && r == 0 ? a2 : 0.0));
                cf[2 * r + 1] = (float)(2.0 * a);
            }
            if (d->has_salient) cf[2 * nreg] = (float)(2.0 * a2);
            for (size_t p = 0; p < P; p++)
                L->coef[(i - i % PBS2P_ROW_BLOCK) * G * P + (g * P + p) * nr + i % PBS2P_ROW_BLOCK] = cf[p];
        }
    }
done:
    free(kept_words);
    free(row.kept);
    free(prow.kept);
    pbs2p_decoder_free(&dec);
    if (st != PBS2P_OK) { pbs2p_layer_free(L); return st; }
    *out = L;
    return PBS2P_OK;
}
