/*
 * coord_dp.c - the coordinator's privacy accounting (docs/privacy.md).
 *
 * Each region noises its own deltas (region_dp.c), so each spends its own
 * epsilon: one full-batch Gaussian mechanism per delta it releases. The
 * coordinator counts the whole deltas it receives from each region and
 * reports the largest epsilon any has spent, per version (into the store)
 * and in the progress line. A round that would take some region past
 * privacy.epsilon is not started: the run ends cleanly, like a finished
 * one (every program exits with status 0), and says why.
 */
#include "coord_impl.h"

#include "log.h"

#include <stdio.h>

/* The most deltas any region has released, plus `more`. */
static uint64_t releases(const gdml_coord *c, uint64_t more)
{
    uint64_t most = 0;
    for (size_t i = 0; i < c->members.used; i++)
        if (c->slots[i].releases > most)
            most = c->slots[i].releases;
    return c->dp_base + most + more;
}

double coord_dp_epsilon(const gdml_coord *c, uint64_t more)
{
    return c->cfg->dp ? gdml_dp_epsilon(c->cfg->dp, releases(c, more)) : 0;
}

double gdml_coord_epsilon(const gdml_coord *c)
{
    return coord_dp_epsilon(c, 0);
}

bool gdml_coord_privacy_stopped(const gdml_coord *c)
{
    return c->dp_stopped;
}

bool coord_dp_stop(gdml_coord *c, int64_t now)
{
    const gdml_dp_config *dp = c->cfg->dp;
    if (!dp || gdml_dp_release_allowed(dp, releases(c, 0)))
        return false;
    char why[GDML_ERRMSG_MAX];
    snprintf(why, sizeof why,
             "privacy budget: another round would take epsilon from %.4g to %.4g, past "
             "privacy.epsilon = %g (delta %g); stopped after %llu of coordinator.rounds = %llu",
             coord_dp_epsilon(c, 0), coord_dp_epsilon(c, 1), dp->epsilon_limit, dp->delta,
             (unsigned long long)c->round, (unsigned long long)c->cfg->rounds);
    gdml_info("privacy_stop", "why=%s", why);
    c->dp_stopped = true;
    coord_finish(c, now, 0, GDML_OK, why);
    return true;
}

gdml_err gdml_coord_check_privacy(const gdml_coord_config *cfg, gdml_errmsg *e)
{
    const gdml_dp_config *dp = cfg->dp;
    if (!dp || dp->epsilon_limit <= 0 || gdml_dp_epsilon(dp, cfg->rounds) <= dp->epsilon_limit)
        return GDML_OK;
    if (cfg->quorum != 0) {
        /* A quorum or asynchronous round merges some regions' deltas, not
         * all: how many each region releases depends on their speeds, which
         * only the run shows. It stops at the limit instead. */
        gdml_info("privacy_limit", "rounds_fit=%llu epsilon_limit=%g stops=at_limit",
                  (unsigned long long)gdml_dp_max_releases(dp, cfg->rounds), dp->epsilon_limit);
        return GDML_OK;
    }
    uint64_t fit = gdml_dp_max_releases(dp, cfg->rounds);
    return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                           "coordinator.rounds = %llu would spend epsilon %.4g at delta %g, past "
                           "privacy.epsilon = %g: each round releases one delta of every region. "
                           "Give coordinator.rounds = %llu or fewer, privacy.noise_multiplier = %g "
                           "or more (now %g), or a larger privacy.epsilon",
                           (unsigned long long)cfg->rounds, gdml_dp_epsilon(dp, cfg->rounds),
                           dp->delta, dp->epsilon_limit, (unsigned long long)fit,
                           gdml_dp_noise_for(dp, cfg->rounds), dp->noise_multiplier);
}
