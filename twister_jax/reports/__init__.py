"""Score reports for benchmark suites (Atari 100k, DMC): reference scores, HNS, rliable aggregates.

Modules (none imports jax; `aggregate` imports rliable lazily, `plots` imports matplotlib with Agg):
  scores     task lists, random/human references, published per-game and aggregate scores, HNS
  runs       reading `ROOT/<task>/seed_<n>/` run trees; finished runs and named exclusions
  aggregate  mean / median / IQM with 95% stratified bootstrap intervals (rliable)
  tables     per-task tables, Markdown and CSV
  plots      PNG figures
  report     `make_report`: all of the above into one output folder
  synthetic  writes fake run trees with known scores (tests, demos)
Command lines: experiments/aggregate_scores.py, experiments/run_suite.py.
"""
