/* tokenizer_internal.h — the tokenizer's state and the BPE engine shared by the byte-level (tokenizer.c) and
 * SentencePiece-style (tokenizer_spm.c) front ends; not part of the public API. */
#ifndef PBS2P_TOKENIZER_INTERNAL_H
#define PBS2P_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "pbs2p.h"

enum { PRE_GPT2 = 0, PRE_SMOLLM = 1, PRE_SPM = 2, PRE_LLAMA3 = 3, PRE_QWEN2 = 4 };  /* pbs2p_tokenizer_info.pre */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };
/* where a "llama" tokenizer puts its '▁' prefix (tokenizer.ggml.pre, see tokenizer_spm.c) */
enum { SPM_PREFIX_EVERY = 0, SPM_PREFIX_ALWAYS = 1, SPM_PREFIX_FIRST = 2 };

struct pbs2p_tokenizer {
    int32_t n_vocab;
    int pre;                /* PRE_*; PRE_SPM for tokenizer.ggml.model "llama" */
    char *text;             /* every token's text (UTF-8), concatenated */
    uint64_t *text_off;     /* (n_vocab + 1) offsets into text */
    char *piece;            /* every token's decoded bytes, concatenated */
    uint64_t *piece_off;    /* (n_vocab + 1) */
    int32_t *types;         /* (n_vocab) tokenizer.ggml.token_type, NORMAL when the key is absent */
    int32_t *tok_slots;     /* open-addressing token text -> id (id + 1, 0 = empty) */
    size_t tok_mask;
    uint64_t *merge_keys;   /* open addressing (left id << 32 | right id) + 1, 0 = empty */
    uint32_t *merge_rank;
    int32_t *merge_out;     /* id of left+right */
    size_t merge_mask;
    int32_t byte_tok[256];  /* gpt2: id of the one-symbol token of each byte; llama: id of "<0xNN>"; -1 when absent */
    int32_t *special;       /* ids of added tokens, longest text first */
    size_t n_special;
    /* "llama" only */
    int spm_prefix;         /* SPM_PREFIX_* */
    int spm_split;          /* 1: BPE runs on each '▁'-led word (Metaspace split=true), 0: on the whole segment */
    int space_prefix;       /* tokenizer.ggml.add_space_prefix: add '▁' (per spm_prefix), strip one ' ' on decode */
    int32_t meta_id;        /* id of "▁", -1 when absent */
    int merge_by_order;     /* merges derived without a merge list follow token order, not scores (Gemma) */
    pbs2p_tokenizer_info info;
};

typedef struct {
    uint32_t rank;
    uint32_t pos;       /* index of the left symbol (leftmost first on equal ranks) */
    int32_t left, right, merged;  /* the pair's ids and the id they merge into */
} bpe_pair;

typedef struct {
    int32_t *ids;
    size_t cap, n;      /* n counts every id, also those past cap */
    int32_t *sym;       /* BPE work arrays for a word of up to work_cap symbols, grown on demand */
    int32_t *next, *prev;
    bpe_pair *heap;     /* min-heap by (rank, pos); at most 3 * work_cap entries */
    size_t work_cap, n_heap;
} emit_state;

/* One code point of s[0..n) (*adv bytes); an invalid byte gives 0x80000000 | byte with *adv = 1. */
uint32_t pbs2p_tok_utf8_next(const unsigned char *s, size_t n, size_t *adv);
/* Id of the token whose text is s[0..n), -1 when none. */
int32_t pbs2p_tok_lookup(const pbs2p_tokenizer *t, const char *s, size_t n);
void pbs2p_tok_emit(emit_state *e, int32_t id);
/* Allocate the merge table for up to `count` merges. */
pbs2p_status pbs2p_tok_merge_table(pbs2p_tokenizer *t, size_t count);
/* Grow the work arrays to hold n symbols (e->sym keeps its contents). */
pbs2p_status pbs2p_tok_work(emit_state *e, size_t n);
/* Merge e->sym[0..k) by merge rank (lowest first, leftmost on ties) and emit the result. */
void pbs2p_tok_bpe(const pbs2p_tokenizer *t, emit_state *e, int32_t k);
/* Insert merge (a, b) -> c of rank r; a repeated pair keeps its first rank. */
void pbs2p_tok_add_merge(pbs2p_tokenizer *t, int32_t a, int32_t b, int32_t c, uint32_t r);

/* tokenizer_spm.c: "llama" keys (pre, add_space_prefix, byte tokens, pieces), after tokens and types are read */
pbs2p_status pbs2p_spm_load(const pbs2p_gguf *f, pbs2p_tokenizer *t, uint64_t text_bytes);
/* Gemma files (general.architecture gemma*): respell blank user-defined tokens "  " as "▁▁" vocabulary tokens and
 * order derived merges by token index, as transformers reads them; *text_bytes is the new text size. */
pbs2p_status pbs2p_spm_respell(const pbs2p_gguf *f, pbs2p_tokenizer *t, uint64_t *text_bytes);
/* the merge table transformers derives from tokenizer.ggml.scores (or token order) when the file has no merges */
pbs2p_status pbs2p_spm_merges_from_scores(const pbs2p_gguf *f, pbs2p_tokenizer *t);
/* encode text[0..len), a segment holding no added token that starts at byte `start` of the whole input */
pbs2p_status pbs2p_spm_encode(const pbs2p_tokenizer *t, const unsigned char *text, size_t len, size_t start,
                              emit_state *e);

#endif
