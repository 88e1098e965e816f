/* config_privacy.c - [privacy] as the Gaussian mechanism's configuration (dp.h). */
#include "config.h"

#include <string.h>

bool gdml_config_privacy(const gdml_config *cfg, gdml_dp_config *out)
{
    if (strcmp(cfg->privacy.dp, "on") != 0)
        return false;
    *out = (gdml_dp_config){.clip = cfg->privacy.clip,
                            .noise_multiplier = cfg->privacy.noise_multiplier,
                            .delta = cfg->privacy.delta,
                            .epsilon_limit = cfg->privacy.epsilon,
                            .seed = (uint64_t)cfg->privacy.seed};
    return true;
}
