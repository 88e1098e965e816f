/*
 * score.h - how a model does on held-out rows: how many rows, how many it
 * predicted right, its mean loss over them. Workers measure one on their
 * holdout, regional servers and the coordinator add them up, the store keeps
 * them per region; this is the one definition of how they combine (rows and
 * correct add up, the loss is the row-weighted mean). Metrics only: nothing
 * that trains reads them.
 */
#ifndef GDML_SCORE_H
#define GDML_SCORE_H

#include <stdbool.h>
#include <stdint.h>

/* The largest mean loss a score may carry; a peer's larger one is refused. */
#define GDML_SCORE_MAX_LOSS 1e6

typedef struct gdml_score {
    uint64_t rows;    /* 0: no score */
    uint64_t correct; /* <= rows */
    double loss;      /* mean cross-entropy over the rows; 0 when rows is 0 */
} gdml_score;

/* Folds b into a: rows and correct add up, the loss becomes the row-weighted mean. */
void gdml_score_add(gdml_score *a, const gdml_score *b);

/* correct / rows; NaN when there are no rows. */
double gdml_score_accuracy(const gdml_score *s);

/*
 * True if s is one a peer may send: no rows and nothing else, or correct <=
 * rows <= max_rows and a finite loss in [0, GDML_SCORE_MAX_LOSS].
 */
bool gdml_score_ok(const gdml_score *s, uint64_t max_rows);

#endif
