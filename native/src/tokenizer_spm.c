/* tokenizer_spm.c — SentencePiece-style BPE with byte fallback (tokenizer.ggml.model "llama"), encoding and
 * decoding as Hugging Face's Llama tokenizers do.
 *
 * A text segment (text between added tokens, which tokenizer.c matches whole first) is normalized: every ' '
 * becomes '▁' (U+2581) and a '▁' is prepended when tokenizer.ggml.add_space_prefix (default true) and
 * tokenizer.ggml.pre say so:
 *   "default"               every non-empty segment, always (HF normalizer Prepend("▁") + Replace(" ", "▁"),
 *                           the Llama-2 tokenizer.json; also llama.cpp's rule)
 *   "metaspace-always"      every segment that does not already start with '▁' (HF Metaspace, prepend_scheme always)
 *   "metaspace-first"       only a segment at byte 0 of the input not starting with '▁' (prepend_scheme first,
 *                           what transformers' LlamaTokenizer builds)
 *   "metaspace-never"       none
 *   each metaspace name may end in "-split": BPE then runs on each '▁'-led word (Metaspace split=true)
 *                           instead of on the whole segment.
 * Each code point becomes the token of its text; one with no token becomes the "<0xNN>" tokens of its UTF-8
 * bytes (HF byte_fallback), else the unknown token (consecutive ones fused, HF fuse_unk), else nothing. The
 * symbols are merged by tokenizer.ggml.merges rank; a file with scores but no merges (SentencePiece's own) merges
 * the adjacent pair whose concatenation is the token of highest score, leftmost on ties.
 * Pieces: a BYTE token is its byte, an added or unknown token its raw text, any other its text with '▁' -> ' ';
 * detokenizing strips one leading ' ' when add_space_prefix (HF's Strip(" ", 1, 0) decoder).
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

static const char META[] = "\xE2\x96\x81"; /* '▁' U+2581 in UTF-8 */
enum { META_LEN = 3 };

static pbs2p_status read_pre(const pbs2p_gguf *f, pbs2p_tokenizer *t) {
    const char *s;
    size_t n;
    t->spm_prefix = SPM_PREFIX_EVERY;
    t->spm_split = 0;
    pbs2p_status st = pbs2p_gguf_get_str(f, "tokenizer.ggml.pre", &s, &n);
    if (st == PBS2P_ERR_NOT_FOUND) return PBS2P_OK;
    if (st != PBS2P_OK) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: tokenizer.ggml.pre is not a string");
    if (n == 7 && memcmp(s, "default", 7) == 0) return PBS2P_OK;
    static const char *const names[] = {"metaspace-always", "metaspace-first", "metaspace-never"};
    for (int k = 0; k < 3; k++) {
        size_t ln = strlen(names[k]);
        if (n < ln || memcmp(s, names[k], ln) != 0) continue;
        if (n == ln || (n == ln + 6 && memcmp(s + ln, "-split", 6) == 0)) {
            t->spm_prefix = k == 1 ? SPM_PREFIX_FIRST : SPM_PREFIX_ALWAYS;
            t->spm_split = n > ln;
            if (k == 2) t->space_prefix = 0;
            return PBS2P_OK;
        }
    }
    return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "tokenizer: \"llama\" pre-tokenizer \"%.*s\" is not supported (default, "
                      "metaspace-always, metaspace-first, metaspace-never, each metaspace one optionally -split)",
                      (int)(n > 64 ? 64 : n), s);
}

/* The byte of a "<0xNN>" token text, -1 when it is not one. */
static int byte_of(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = 16 * v + d;
    }
    return v;
}

pbs2p_status pbs2p_spm_load(const pbs2p_gguf *f, pbs2p_tokenizer *t, uint64_t text_bytes) {
    int v;
    pbs2p_status st = pbs2p_gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &v);
    if (st == PBS2P_ERR_NOT_FOUND) v = 1; /* llama.cpp's default for "llama" */
    else if (st != PBS2P_OK)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: tokenizer.ggml.add_space_prefix is not a bool");
    t->space_prefix = v != 0;
    if ((st = read_pre(f, t)) != PBS2P_OK) return st;

    for (int b = 0; b < 256; b++) {
        char name[7] = {'<', '0', 'x', "0123456789ABCDEF"[b >> 4], "0123456789ABCDEF"[b & 15], '>', 0};
        t->byte_tok[b] = pbs2p_tok_lookup(t, name, 6);
    }
    t->meta_id = pbs2p_tok_lookup(t, META, META_LEN);

    size_t V = (size_t)t->n_vocab;
    t->piece = malloc(text_bytes ? text_bytes : 1); /* a piece is never longer than its text */
    t->piece_off = malloc((V + 1) * sizeof *t->piece_off);
    if (!t->piece || !t->piece_off) return pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory");
    uint64_t off = 0;
    for (size_t i = 0; i < V; i++) {
        const char *ts = t->text + t->text_off[i];
        size_t tn = t->text_off[i + 1] - t->text_off[i];
        int32_t type = t->types[i];
        t->piece_off[i] = off;
        if (type == TT_BYTE) {
            int b = byte_of(ts, tn);
            if (b < 0) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: BYTE token %zu \"%.*s\" is not <0xNN>", i,
                                         (int)(tn > 64 ? 64 : tn), ts);
            t->piece[off++] = (char)b;
        } else if (type == TT_CONTROL || type == TT_USER || type == TT_UNKNOWN) {
            memcpy(t->piece + off, ts, tn);
            off += tn;
        } else {
            for (size_t k = 0; k < tn;) {
                if (k + META_LEN <= tn && memcmp(ts + k, META, META_LEN) == 0) { t->piece[off++] = ' '; k += META_LEN; }
                else t->piece[off++] = ts[k++];
            }
        }
    }
    t->piece_off[V] = off;
    return PBS2P_OK;
}

/* ---- merges from scores (SentencePiece files without tokenizer.ggml.merges) ---- */

static const float *g_scores; /* qsort has no context argument: only used inside load, single call */

static int by_score_desc(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_scores[x] != g_scores[y]) return g_scores[x] > g_scores[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Count (and with insert, add as merges of c's rank) the splits of each NORMAL token c into two tokens a + b. */
static size_t each_split(pbs2p_tokenizer *t, const uint32_t *rank, int insert) {
    size_t count = 0;
    for (int32_t c = 0; c < t->n_vocab; c++) {
        if (t->types[c] != TT_NORMAL) continue;
        const unsigned char *s = (const unsigned char *)t->text + t->text_off[c];
        size_t n = t->text_off[c + 1] - t->text_off[c], adv;
        for (size_t k = 0; k < n; k += adv) {
            pbs2p_tok_utf8_next(s + k, n - k, &adv);
            if (k == 0) continue;
            int32_t a = pbs2p_tok_lookup(t, (const char *)s, k), b = pbs2p_tok_lookup(t, (const char *)s + k, n - k);
            if (a < 0 || b < 0) continue;
            count++;
            if (insert) pbs2p_tok_add_merge(t, a, b, c, rank[c]);
        }
    }
    return count;
}

pbs2p_status pbs2p_spm_merges_from_scores(const pbs2p_gguf *f, pbs2p_tokenizer *t) {
    const void *data;
    uint64_t count;
    pbs2p_status st = pbs2p_gguf_get_arr(f, "tokenizer.ggml.scores", PBS2P_GGUF_FLOAT32, &data, &count);
    if (st == PBS2P_ERR_NOT_FOUND)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: a \"llama\" tokenizer needs tokenizer.ggml.merges or .scores");
    if (st != PBS2P_OK) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: tokenizer.ggml.scores is not an f32 array");
    size_t V = (size_t)t->n_vocab;
    if (count != V)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: %llu scores for %zu tokens", (unsigned long long)count, V);
    float *scores = malloc(V * sizeof *scores);
    int32_t *order = malloc(V * sizeof *order);
    uint32_t *rank = malloc(V * sizeof *rank);
    if (!scores || !order || !rank) { st = pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory"); goto done; }
    memcpy(scores, data, V * sizeof *scores); /* little-endian host (checked by the GGUF reader) */
    for (size_t i = 0; i < V; i++) {
        if (scores[i] != scores[i]) { st = pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: score %zu is NaN", i); goto done; }
        order[i] = (int32_t)i;
    }
    g_scores = scores;
    qsort(order, V, sizeof *order, by_score_desc);
    /* rank = the number of higher distinct scores: equal scores tie, and ties go to the leftmost pair */
    for (size_t i = 0, r = 0; i < V; i++) {
        if (i > 0 && scores[order[i]] != scores[order[i - 1]]) r++;
        rank[order[i]] = (uint32_t)r;
    }
    size_t n_merges = each_split(t, rank, 0);
    if ((st = pbs2p_tok_merge_table(t, n_merges)) != PBS2P_OK) goto done;
    each_split(t, rank, 1);
    t->info.n_merges = (int32_t)(n_merges > INT32_MAX ? INT32_MAX : n_merges);
done:
    free(scores); free(order); free(rank);
    return st;
}

/* ---- encoding ---- */

typedef struct {
    int32_t k;        /* symbols in e->sym */
    int unk_open;     /* the last symbol is an unknown token that the next unknown code point joins */
} spm_word;

static pbs2p_status push(emit_state *e, spm_word *w, int32_t id) {
    pbs2p_status st = pbs2p_tok_work(e, (size_t)w->k + 1);
    if (st == PBS2P_OK) e->sym[w->k++] = id;
    return st;
}

/* Add one normalized code point s[0..n) to the word (splitting first at a '▁' in split mode). */
static pbs2p_status add_char(const pbs2p_tokenizer *t, emit_state *e, spm_word *w, const char *s, size_t n) {
    pbs2p_status st = PBS2P_OK;
    if (t->spm_split && w->k > 0 && n == META_LEN && memcmp(s, META, META_LEN) == 0) { /* '▁' leads a new word */
        pbs2p_tok_bpe(t, e, w->k);
        w->k = 0;
        w->unk_open = 0;
    }
    int32_t id = n == META_LEN && memcmp(s, META, META_LEN) == 0 ? t->meta_id : pbs2p_tok_lookup(t, s, n);
    if (id >= 0) {
        w->unk_open = 0;
        return push(e, w, id);
    }
    int all = 1;
    for (size_t i = 0; i < n; i++) all &= t->byte_tok[(unsigned char)s[i]] >= 0;
    if (all) {
        w->unk_open = 0;
        for (size_t i = 0; i < n && st == PBS2P_OK; i++) st = push(e, w, t->byte_tok[(unsigned char)s[i]]);
        return st;
    }
    if (t->info.unk < 0 || w->unk_open) return PBS2P_OK; /* no unknown token: dropped; else fused into the last */
    w->unk_open = 1;
    return push(e, w, t->info.unk);
}

pbs2p_status pbs2p_spm_encode(const pbs2p_tokenizer *t, const unsigned char *text, size_t len, size_t start,
                              emit_state *e) {
    if (len == 0) return PBS2P_OK;
    int meta_first = text[0] == ' ' || (len >= META_LEN && memcmp(text, META, META_LEN) == 0);
    int prefix = t->space_prefix && (t->spm_prefix == SPM_PREFIX_EVERY ||
                                     (!meta_first && (t->spm_prefix == SPM_PREFIX_ALWAYS || start == 0)));
    spm_word w = {0, 0};
    pbs2p_status st = PBS2P_OK;
    if (prefix) st = add_char(t, e, &w, META, META_LEN);
    for (size_t i = 0; i < len && st == PBS2P_OK;) {
        size_t adv;
        pbs2p_tok_utf8_next(text + i, len - i, &adv);
        st = text[i] == ' ' ? add_char(t, e, &w, META, META_LEN) : add_char(t, e, &w, (const char *)text + i, adv);
        i += adv;
    }
    if (st == PBS2P_OK) pbs2p_tok_bpe(t, e, w.k);
    return st;
}
