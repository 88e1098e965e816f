/* chunk.c - the chunk grid and per-sender transfer records (chunk.h). */
#include "chunk.h"

#include <stdlib.h>
#include <string.h>

uint64_t gdml_chunk_count(uint64_t total)
{
    return total / GDML_CHUNK_ELEMS + (total % GDML_CHUNK_ELEMS != 0);
}

uint64_t gdml_chunk_len(uint64_t total, uint64_t offset)
{
    uint64_t left = total - offset;
    return left < GDML_CHUNK_ELEMS ? left : GDML_CHUNK_ELEMS;
}

gdml_err gdml_transfer_init(gdml_transfer *t, uint64_t max_total)
{
    memset(t, 0, sizeof *t);
    t->words = (size_t)((gdml_chunk_count(max_total) + 63) / 64);
    if (t->words == 0)
        t->words = 1;
    t->seen = calloc(t->words, sizeof *t->seen);
    return t->seen ? GDML_OK : GDML_ERR_NOMEM;
}

void gdml_transfer_fini(gdml_transfer *t)
{
    free(t->seen);
    memset(t, 0, sizeof *t);
}

void gdml_transfer_reset(gdml_transfer *t)
{
    if (t->seq && t->received < t->expected)
        t->abandoned++;
    t->seq = t->total = t->expected = t->received = 0;
    memset(t->seen, 0, t->words * sizeof *t->seen);
}

gdml_chunk_verdict gdml_transfer_offer(gdml_transfer *t, const gdml_msg_header *h,
                                       uint64_t want_total, bool *starts, gdml_errmsg *e)
{
    *starts = false;
    if (h->seq == 0) { /* 0 means "no transfer" here; senders count from 1 */
        gdml_errmsg_set(e, GDML_ERR_PROTO, "%s chunk with seq 0; sequence numbers start at 1",
                        gdml_msg_type_name(h->type));
        return GDML_CHUNK_BAD;
    }
    if (h->total != want_total) {
        gdml_errmsg_set(e, GDML_ERR_PROTO, "%s chunk of a %llu-element tensor; expected %llu",
                        gdml_msg_type_name(h->type), (unsigned long long)h->total,
                        (unsigned long long)want_total);
        return GDML_CHUNK_BAD;
    }
    if (gdml_chunk_count(h->total) > (uint64_t)t->words * 64) {
        gdml_errmsg_set(e, GDML_ERR_PROTO, "%s chunk of a tensor larger than this link carries",
                        gdml_msg_type_name(h->type));
        return GDML_CHUNK_BAD;
    }
    if (t->seq && h->seq < t->seq)
        return GDML_CHUNK_STALE;
    if (!t->seq || h->seq > t->seq) {
        gdml_transfer_reset(t);
        t->seq = h->seq;
        t->total = h->total;
        t->expected = h->chunks;
        *starts = true;
    } else if (h->chunks != t->expected) {
        gdml_errmsg_set(e, GDML_ERR_PROTO,
                        "%s seq %llu: a chunk says the transfer has %llu chunks, an earlier one %llu",
                        gdml_msg_type_name(h->type), (unsigned long long)h->seq,
                        (unsigned long long)h->chunks, (unsigned long long)t->expected);
        return GDML_CHUNK_BAD;
    }
    uint64_t index = h->offset / GDML_CHUNK_ELEMS;
    uint64_t bit = 1ull << (index % 64);
    if (t->seen[index / 64] & bit)
        return GDML_CHUNK_DUPLICATE;
    if (t->received == t->expected) {
        gdml_errmsg_set(e, GDML_ERR_PROTO, "%s seq %llu: more chunks than the %llu announced",
                        gdml_msg_type_name(h->type), (unsigned long long)h->seq,
                        (unsigned long long)t->expected);
        return GDML_CHUNK_BAD;
    }
    t->seen[index / 64] |= bit;
    t->received++;
    return GDML_CHUNK_NEW;
}

bool gdml_transfer_complete(const gdml_transfer *t)
{
    return t->seq != 0 && t->received == t->expected;
}
