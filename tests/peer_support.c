/* peer_support.c - placeholder */
#include "peer_support.h"
