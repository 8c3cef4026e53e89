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
 * symbols are merged by tokenizer.ggml.merges rank. A file with scores but no merges (llama.cpp's conversion of a
 * SentencePiece model) gets the merges transformers derives from it (generate_merges): every split of a token into
 * two tokens, ordered by the token's score, then the longer left and right part. Gemma files (general.architecture
 * gemma, gemma2, gemma3) follow transformers' Gemma rule instead: a user-defined token of blanks, stored as real
 * spaces ("  "), is respelled "▁▁" and becomes a vocabulary token merged like the others (SentencePiece would
 * match it whole), and the token's index, not its score, orders the merges. So a run of 55 spaces is
 * "▁"x16 + "▁"x16 + "▁"x23, as Hugging Face encodes it, not SentencePiece's 31 + 24.
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

/* Python's str.isspace, which transformers' respelling rule uses. */
static int py_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* Code points in s[0..n) when every one is whitespace and one is ' ', else 0. */
static size_t blank_run(const unsigned char *s, size_t n) {
    size_t cps = 0, adv;
    int space = 0;
    for (size_t k = 0; k < n; k += adv, cps++) {
        uint32_t cp = pbs2p_tok_utf8_next(s + k, n - k, &adv);
        if (!py_space(cp)) return 0;
        space |= cp == ' ';
    }
    return space ? cps : 0;
}

pbs2p_status pbs2p_spm_respell(const pbs2p_gguf *f, pbs2p_tokenizer *t, uint64_t *text_bytes) {
    const char *s;
    size_t n;
    t->merge_by_order = 0;
    if (pbs2p_gguf_get_str(f, "general.architecture", &s, &n) != PBS2P_OK) return PBS2P_OK;
    int gemma = (n == 5 && memcmp(s, "gemma", 5) == 0) || (n == 6 && (memcmp(s, "gemma2", 6) == 0 ||
                                                                       memcmp(s, "gemma3", 6) == 0));
    if (!gemma) return PBS2P_OK;
    t->merge_by_order = 1;
    size_t V = (size_t)t->n_vocab;
    uint64_t total = 0;
    for (size_t i = 0; i < V; i++) {
        size_t tn = t->text_off[i + 1] - t->text_off[i];
        size_t run = blank_run((const unsigned char *)t->text + t->text_off[i], tn);
        total += run ? META_LEN * run : tn;
    }
    char *text = malloc(total ? total : 1);
    if (!text) return pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory");
    uint64_t off = 0;
    for (size_t i = 0; i < V; i++) {
        const char *ts = t->text + t->text_off[i];
        size_t tn = t->text_off[i + 1] - t->text_off[i];
        size_t run = blank_run((const unsigned char *)ts, tn);
        t->text_off[i] = off;
        if (run) {
            for (size_t k = 0; k < run; k++, off += META_LEN) memcpy(text + off, META, META_LEN);
            t->types[i] = TT_NORMAL; /* a vocabulary token now, merged like any other */
        } else {
            memcpy(text + off, ts, tn);
            off += tn;
        }
    }
    t->text_off[V] = off;
    free(t->text);
    t->text = text;
    *text_bytes = total;
    return PBS2P_OK;
}

typedef struct {
    double key;           /* the merged token's score (its negated index for Gemma): higher merges first */
    uint32_t left_cps, right_cps;
    int32_t c, a, b;      /* a + b -> c */
} split;

/* transformers' generate_merges order: key, longer left, longer right descending; then merged id, left, right. */
static int split_order(const void *x, const void *y) {
    const split *p = x, *q = y;
    if (p->key != q->key) return p->key > q->key ? -1 : 1;
    if (p->left_cps != q->left_cps) return p->left_cps > q->left_cps ? -1 : 1;
    if (p->right_cps != q->right_cps) return p->right_cps > q->right_cps ? -1 : 1;
    if (p->c != q->c) return p->c < q->c ? -1 : 1;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    return (p->b > q->b) - (p->b < q->b);
}

/* Each split of a token c into two tokens a + b (written to out when not NULL); returns how many. */
static size_t each_split(const pbs2p_tokenizer *t, const float *scores, split *out) {
    size_t count = 0;
    for (int32_t c = 0; c < t->n_vocab; c++) {
        const unsigned char *s = (const unsigned char *)t->text + t->text_off[c];
        size_t n = t->text_off[c + 1] - t->text_off[c], adv;
        uint32_t cps = 0, total = 0;
        if (out) for (size_t k = 0; k < n; k += adv, total++) pbs2p_tok_utf8_next(s + k, n - k, &adv);
        for (size_t k = 0; k < n; k += adv, cps++) {
            pbs2p_tok_utf8_next(s + k, n - k, &adv);
            if (k == 0) continue;
            int32_t a = pbs2p_tok_lookup(t, (const char *)s, k), b = pbs2p_tok_lookup(t, (const char *)s + k, n - k);
            if (a < 0 || b < 0) continue;
            if (out) out[count] = (split){scores ? scores[c] : -(double)c, cps, total - cps, c, a, b};
            count++;
        }
    }
    return count;
}

pbs2p_status pbs2p_spm_merges_from_scores(const pbs2p_gguf *f, pbs2p_tokenizer *t) {
    const void *data = NULL;
    uint64_t count;
    size_t V = (size_t)t->n_vocab;
    float *scores = NULL;
    if (!t->merge_by_order) {
        pbs2p_status st = pbs2p_gguf_get_arr(f, "tokenizer.ggml.scores", PBS2P_GGUF_FLOAT32, &data, &count);
        if (st == PBS2P_ERR_NOT_FOUND)
            return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: a \"llama\" tokenizer needs tokenizer.ggml.merges or .scores");
        if (st != PBS2P_OK) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: tokenizer.ggml.scores is not an f32 array");
        if (count != V)
            return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: %llu scores for %zu tokens", (unsigned long long)count, V);
        if (!(scores = malloc(V * sizeof *scores))) return pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory");
        memcpy(scores, data, V * sizeof *scores); /* little-endian host (checked by the GGUF reader) */
        for (size_t i = 0; i < V; i++)
            if (scores[i] != scores[i]) { free(scores); return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: score %zu is NaN", i); }
    }
    size_t n_merges = each_split(t, scores, NULL);
    split *splits = malloc((n_merges ? n_merges : 1) * sizeof *splits);
    pbs2p_status st = splits ? pbs2p_tok_merge_table(t, n_merges) : pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory");
    if (st == PBS2P_OK) {
        each_split(t, scores, splits);
        qsort(splits, n_merges, sizeof *splits, split_order);
        for (size_t r = 0; r < n_merges; r++) pbs2p_tok_add_merge(t, splits[r].a, splits[r].b, splits[r].c, (uint32_t)r);
        t->info.n_merges = (int32_t)(n_merges > INT32_MAX ? INT32_MAX : n_merges);
    }
    free(scores); free(splits);
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
