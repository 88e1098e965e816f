/*
 * test_members.c - the member table of a state machine (members.h): who may
 * join with and without an allowed list, slots up to the capacity, lookup
 * by name and by route, which states a route is good for, and counts.
 */
#include "members.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static gdml_peer route_of(const char *id)
{
    gdml_peer p;
    memset(&p, 0, sizeof p);
    p.len = strlen(id);
    memcpy(p.id, id, p.len);
    return p;
}

Test(members, without_a_list_any_valid_name_may_join)
{
    gdml_members m;
    cr_assert_eq(gdml_members_init(&m, 4, NULL, 0), GDML_OK);
    cr_assert(gdml_members_allowed(&m, "us-east"));
    cr_assert(gdml_members_allowed(&m, "eu.west_2"));
    cr_assert_not(gdml_members_allowed(&m, ""));
    cr_assert_not(gdml_members_allowed(&m, "has space"));
    cr_assert_not(gdml_members_allowed(&m, "slash/y"));
    char longest[GDML_NAME_MAX], too_long[GDML_NAME_MAX + 1];
    memset(longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    memset(too_long, 'a', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    cr_assert(gdml_members_allowed(&m, longest));
    cr_assert_not(gdml_members_allowed(&m, too_long));
    gdml_members_fini(&m);
    cr_assert_null(m.slots);
    gdml_members_fini(&m); /* twice is safe */
}

Test(members, with_a_list_only_listed_names_may_join)
{
    char allowed[2][GDML_NAME_MAX] = {"us-east", "eu-west"};
    gdml_members m;
    cr_assert_eq(gdml_members_init(&m, 4, (const char(*)[GDML_NAME_MAX])allowed, 2), GDML_OK);
    strcpy(allowed[0], "changed"); /* the table keeps its own copy */
    cr_assert(gdml_members_allowed(&m, "us-east"));
    cr_assert(gdml_members_allowed(&m, "eu-west"));
    cr_assert_not(gdml_members_allowed(&m, "changed"));
    cr_assert_not(gdml_members_allowed(&m, "ap-south"), "a valid name not on the list");
    cr_assert_not(gdml_members_allowed(&m, "us-eas"));
    cr_assert_not(gdml_members_allowed(&m, "us-east2"));
    cr_assert_not(gdml_members_allowed(&m, ""));
    gdml_members_fini(&m);
}

Test(members, add_fills_slots_up_to_the_capacity)
{
    gdml_members m;
    cr_assert_eq(gdml_members_init(&m, 3, NULL, 0), GDML_OK);
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(gdml_members_find(&m, names[i]), -1);
        cr_assert_eq(gdml_members_add(&m, names[i]), i);
        cr_assert_str_eq(m.slots[i].name, names[i]);
        cr_assert_eq(m.slots[i].state, GDML_MEMBER_FREE, "a new slot starts free");
    }
    cr_assert_eq(gdml_members_add(&m, "d"), -1, "every slot is used");
    cr_assert_eq(m.used, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(gdml_members_find(&m, names[i]), i);
    cr_assert_eq(gdml_members_find(&m, "d"), -1);
    cr_assert_eq(gdml_members_find(&m, ""), -1);
    gdml_members_fini(&m);

    cr_assert_eq(gdml_members_init(&m, 0, NULL, 0), GDML_OK);
    cr_assert_eq(gdml_members_add(&m, "a"), -1, "a table of no slots");
    cr_assert_eq(gdml_members_find(&m, "a"), -1);
    gdml_members_fini(&m);
}

Test(members, routes_are_good_only_for_joined_and_silent_members)
{
    gdml_members m;
    cr_assert_eq(gdml_members_init(&m, 4, NULL, 0), GDML_OK);
    int i = gdml_members_add(&m, "us-east");
    gdml_peer mine = route_of("\x01route-1"), other = route_of("\x01route-2"),
              prefix = route_of("\x01route-");
    m.slots[i].route = mine;
    const struct {
        gdml_member_state state;
        bool ok;
    } cases[] = {{GDML_MEMBER_FREE, false},
                 {GDML_MEMBER_JOINED, true},
                 {GDML_MEMBER_SILENT, true},
                 {GDML_MEMBER_LEFT, false},
                 {GDML_MEMBER_STOPPED, false}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        m.slots[i].state = cases[c].state;
        cr_assert_eq(gdml_members_route_ok(&m, i, &mine), cases[c].ok, "state %d", cases[c].state);
        cr_assert_not(gdml_members_route_ok(&m, i, &other), "state %d, another route",
                      cases[c].state);
        cr_assert_not(gdml_members_route_ok(&m, i, &prefix), "state %d, a prefix of the route",
                      cases[c].state);
    }
    gdml_members_fini(&m);
}

Test(members, by_route_finds_the_member_of_a_connection)
{
    gdml_members m;
    cr_assert_eq(gdml_members_init(&m, 4, NULL, 0), GDML_OK);
    gdml_peer r1 = route_of("r1"), r2 = route_of("r2"), r3 = route_of("r3");
    int a = gdml_members_add(&m, "a"), b = gdml_members_add(&m, "b"), c = gdml_members_add(&m, "c");
    m.slots[a].state = GDML_MEMBER_JOINED;
    m.slots[a].route = r1;
    m.slots[b].state = GDML_MEMBER_SILENT;
    m.slots[b].route = r2;
    m.slots[c].route = r3; /* a free slot's route means nothing */
    cr_assert_eq(gdml_members_by_route(&m, &r1), a);
    cr_assert_eq(gdml_members_by_route(&m, &r2), b);
    cr_assert_eq(gdml_members_by_route(&m, &r3), -1);
    gdml_peer none = route_of("r4");
    cr_assert_eq(gdml_members_by_route(&m, &none), -1);
    /* A HELLO moves a member to a new route: the old one is nobody's. */
    m.slots[a].route = none;
    cr_assert_eq(gdml_members_by_route(&m, &r1), -1);
    cr_assert_eq(gdml_members_by_route(&m, &none), a);
    gdml_members_fini(&m);
}

Test(members, count_by_state)
{
    gdml_members m;
    cr_assert_eq(gdml_members_init(&m, 8, NULL, 0), GDML_OK);
    gdml_member_state states[] = {GDML_MEMBER_JOINED, GDML_MEMBER_JOINED,  GDML_MEMBER_SILENT,
                                  GDML_MEMBER_LEFT,   GDML_MEMBER_STOPPED, GDML_MEMBER_JOINED};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        char name[8];
        snprintf(name, sizeof name, "m%zu", i);
        int s = gdml_members_add(&m, name);
        cr_assert_eq(s, (int)i);
        m.slots[s].state = states[i];
    }
    cr_assert_eq(gdml_members_count(&m, GDML_MEMBER_JOINED), 3);
    cr_assert_eq(gdml_members_count(&m, GDML_MEMBER_SILENT), 1);
    cr_assert_eq(gdml_members_count(&m, GDML_MEMBER_LEFT), 1);
    cr_assert_eq(gdml_members_count(&m, GDML_MEMBER_STOPPED), 1);
    cr_assert_eq(gdml_members_count(&m, GDML_MEMBER_FREE), 0, "unused slots are not members");
    gdml_members_fini(&m);
}
