"""What every stage leans on: atomic files, checksums, locks, interrupts, paths, settings, errors,
and the BLAS thread policy."""
