"""Release automation: the release sensor, the weekly refresh, declarative automation of
everything downstream of the releases, and the jobs they launch."""
