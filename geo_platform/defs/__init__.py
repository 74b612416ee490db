"""Dagster definitions by domain, loaded by ``geo_platform.definitions``."""

import warnings

import dagster as dg

# Dagster flags the beta and preview APIs the platform chose on purpose (observable
# sources, partitioned check results, sensors over several jobs) at every load, in every
# process: warnings nobody running the platform can act on.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
