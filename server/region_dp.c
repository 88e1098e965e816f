/*
 * region_dp.c - differential privacy on the regional server's deltas
 * (docs/privacy.md): before a delta is encoded, and so before error
 * feedback sees it, it is clipped to privacy.clip and noised (dp.h). What
 * the uplink then keeps as its residual is a function of noised deltas
 * only, so nothing it sends later carries an unnoised part of any round.
 *
 * A DELTA's other figures of the region's data, its training loss and its
 * workers' held-out score, are exact functions of the data that no noise
 * covers: under DP they are not sent (region_dp_scrub), and the progress
 * line's val figures are absent.
 *
 * The region is the party whose privacy is spent, so it counts its own
 * releases (its syncs, kept in its checkpoint) and sends no delta that
 * would take its epsilon past privacy.epsilon: it leaves instead, saying
 * so. The coordinator normally stops the job a round before that
 * (coord_dp.c); this is the guard for a coordinator configured otherwise.
 */
#include "region_impl.h"

#include "log.h"

#include <math.h>
#include <stdio.h>

bool region_privatize(gdml_region *r, int64_t now)
{
    const gdml_dp_config *c = gdml_dp_config_of(r->cfg->dp);
    if (!gdml_dp_release_allowed(c, r->syncs)) {
        char why[GDML_ERRMSG_MAX];
        snprintf(why, sizeof why,
                 "privacy budget spent: delta %llu would take this region's epsilon from %.4g to "
                 "%.4g, past privacy.epsilon = %g (delta %g); it sends no more deltas. Raise "
                 "privacy.epsilon or privacy.noise_multiplier, or give coordinator.rounds = %llu",
                 (unsigned long long)r->syncs + 1, gdml_dp_epsilon(c, r->syncs),
                 gdml_dp_epsilon(c, r->syncs + 1), c->epsilon_limit, c->delta,
                 (unsigned long long)r->syncs);
        gdml_warn("privacy_spent", "why=%s", why);
        region_exit(r, now, 0, GDML_OK, why);
        return false;
    }
    double norm = gdml_dp_privatize(r->cfg->dp, r->scratch, r->n);
    gdml_debug("privatize", "delta=%llu norm=%.4g clipped=%.4g noise_std=%.4g epsilon=%.4f "
               "dp_delta=%g",
               (unsigned long long)r->syncs + 1, norm, norm < c->clip ? norm : c->clip,
               c->noise_multiplier * c->clip, gdml_dp_epsilon(c, r->syncs + 1), c->delta);
    return true;
}

void region_dp_scrub(gdml_msg_header *h)
{
    h->metric = NAN;
    h->val = (gdml_score){0};
    h->val_version = 0;
}
