"""The cloud side of the thin uplink: a super-resolution network trained online from the site's patches."""
