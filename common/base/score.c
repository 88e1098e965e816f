/*
 * score.c - held-out scores and how they combine (score.h).
 */
#include "score.h"

#include <math.h>
#include <stdbool.h>

void gdml_score_add(gdml_score *a, const gdml_score *b)
{
    if (b->rows == 0)
        return;
    double rows = (double)a->rows + (double)b->rows;
    a->loss = (a->loss * (double)a->rows + b->loss * (double)b->rows) / rows;
    a->rows += b->rows;
    a->correct += b->correct;
}

double gdml_score_accuracy(const gdml_score *s)
{
    return s->rows ? (double)s->correct / (double)s->rows : NAN;
}

bool gdml_score_ok(const gdml_score *s, uint64_t max_rows)
{
    if (s->rows == 0)
        return s->correct == 0 && s->loss == 0;
    return s->rows <= max_rows && s->correct <= s->rows && s->loss >= 0 &&
           s->loss <= GDML_SCORE_MAX_LOSS;
}
