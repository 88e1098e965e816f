/* action.c - the FIFO of actions between a state machine and its loop (action.h). */
#include "action.h"

#include <stdlib.h>
#include <string.h>

gdml_err gdml_actions_push(gdml_actions *a, const gdml_action *act)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        gdml_action *q = malloc(cap * sizeof *q);
        if (!q)
            return GDML_ERR_NOMEM;
        for (size_t i = 0; i < a->n; i++)
            q[i] = a->q[(a->head + i) % a->cap];
        free(a->q);
        a->q = q;
        a->head = 0;
        a->cap = cap;
    }
    a->q[(a->head + a->n++) % a->cap] = *act;
    return GDML_OK;
}

gdml_err gdml_actions_send(gdml_actions *a, int link, const gdml_peer *peer, gdml_blob *frame)
{
    gdml_action act;
    memset(&act, 0, sizeof act);
    act.kind = GDML_ACT_SEND;
    act.link = link;
    if (peer)
        act.peer = *peer;
    act.frame = gdml_blob_ref(frame);
    gdml_err err = gdml_actions_push(a, &act);
    if (err)
        gdml_blob_unref(&act.frame);
    return err;
}

bool gdml_actions_pop(gdml_actions *a, gdml_action *out)
{
    if (a->n == 0)
        return false;
    *out = a->q[a->head];
    a->head = (a->head + 1) % a->cap;
    a->n--;
    return true;
}

size_t gdml_actions_count(const gdml_actions *a)
{
    return a->n;
}

void gdml_action_release(gdml_action *act)
{
    gdml_blob_unref(&act->frame);
}

void gdml_actions_fini(gdml_actions *a)
{
    gdml_action act;
    while (gdml_actions_pop(a, &act))
        gdml_action_release(&act);
    free(a->q);
    memset(a, 0, sizeof *a);
}
