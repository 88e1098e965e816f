/* members.c - the member table of a state machine (members.h). */
#include "members.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

gdml_err gdml_members_init(gdml_members *m, size_t cap, const char (*allowed)[GDML_NAME_MAX],
                           size_t n_allowed)
{
    memset(m, 0, sizeof *m);
    m->slots = calloc(cap ? cap : 1, sizeof *m->slots);
    m->allowed = n_allowed ? calloc(n_allowed, sizeof *m->allowed) : NULL;
    if (!m->slots || (n_allowed && !m->allowed)) {
        gdml_members_fini(m);
        return GDML_ERR_NOMEM;
    }
    m->cap = cap;
    for (size_t i = 0; i < n_allowed; i++)
        memcpy(m->allowed[i], allowed[i], GDML_NAME_MAX);
    m->n_allowed = n_allowed;
    return GDML_OK;
}

void gdml_members_fini(gdml_members *m)
{
    free(m->slots);
    free(m->allowed);
    memset(m, 0, sizeof *m);
}

int gdml_members_find(const gdml_members *m, const char *name)
{
    for (size_t i = 0; i < m->used; i++)
        if (strcmp(m->slots[i].name, name) == 0)
            return (int)i;
    return -1;
}

bool gdml_members_allowed(const gdml_members *m, const char *name)
{
    if (m->n_allowed == 0)
        return gdml_name_ok(name);
    for (size_t i = 0; i < m->n_allowed; i++)
        if (strcmp(m->allowed[i], name) == 0)
            return true;
    return false;
}

int gdml_members_add(gdml_members *m, const char *name)
{
    if (m->used == m->cap)
        return -1;
    gdml_member *s = &m->slots[m->used];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    return (int)m->used++;
}

bool gdml_members_route_ok(const gdml_members *m, int i, const gdml_peer *route)
{
    const gdml_member *s = &m->slots[i];
    return (s->state == GDML_MEMBER_JOINED || s->state == GDML_MEMBER_SILENT) &&
           gdml_peer_eq(&s->route, route);
}

int gdml_members_by_route(const gdml_members *m, const gdml_peer *route)
{
    for (size_t i = 0; i < m->used; i++)
        if (m->slots[i].state != GDML_MEMBER_FREE && gdml_peer_eq(&m->slots[i].route, route))
            return (int)i;
    return -1;
}

int gdml_members_drop_route(gdml_members *m, const gdml_peer *route)
{
    int i = gdml_members_by_route(m, route);
    if (i < 0)
        return -1;
    gdml_member *s = &m->slots[i];
    if (s->state != GDML_MEMBER_JOINED && s->state != GDML_MEMBER_SILENT)
        return -1;
    s->state = GDML_MEMBER_LEFT;
    return i;
}

size_t gdml_members_count(const gdml_members *m, gdml_member_state state)
{
    size_t n = 0;
    for (size_t i = 0; i < m->used; i++)
        n += m->slots[i].state == state;
    return n;
}
