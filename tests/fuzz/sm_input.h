/*
 * sm_input.h - how the state machines' fuzz targets read their input: a
 * sequence of records, each an event for the state machine.
 *
 *   u8 kind, u8 who, u16 length (little-endian), length bytes
 *
 * kind % 4: 0 a frame (the bytes, decoded as the transport would; refused if
 * they do not decode), 1 time passing (length ms), 2 the transport dropping
 * a peer, 3 a frame on the other link (the regional server's). `who` picks
 * the sender's name and connection from a few, so names and routes can
 * disagree as an attacker would make them. The same layout serves
 * fuzz_seeds.c, which writes the seed corpus.
 */
#ifndef GDML_FUZZ_SM_INPUT_H
#define GDML_FUZZ_SM_INPUT_H

#include "transport.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sm_record {
    int kind; /* 0 frame, 1 time, 2 drop, 3 frame on the other link */
    const char *name, *route;
    const uint8_t *bytes;
    size_t len;
} sm_record;

/* Takes the next record from *data; false at the end. */
bool sm_next(const uint8_t **data, size_t *size, sm_record *r);

/* Fills rx from a record's bytes; false (and rx->reason set) if they do not decode. */
bool sm_rx(const sm_record *r, gdml_rx *rx);

#endif
