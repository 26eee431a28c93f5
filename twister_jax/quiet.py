def quiet_libraries(keep_absl_verbosity: bool = False) -> None:
    if not keep_absl_verbosity:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.WARNING)
