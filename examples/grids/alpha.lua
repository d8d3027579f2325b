-- examples/grids/alpha.lua: RLSC L1 vs L2 over alpha and N on the toy world, three seeds
-- (docs/EVALUATION.md "Ablation grids"): 2 x 2 x 2 x 3 = 24 runs, about 10 minutes on a 2-core
-- machine.
--   build/confit recipes/ablate.lua examples/grids/alpha.lua --dry-run   # the commands
--   build/confit recipes/ablate.lua examples/grids/alpha.lua             # run (or continue)
return {
  base = {model = "examples/toy/model", steps = 20, questions_per_step = 8,
          eval_questions = 200},                   -- flags of every run
  grid = {method = {"l1", "l2"}, alpha = {0, 0.1}, n = {8, 16}, seed = {1, 2, 3}},
  out = "runs/ablate-alpha",
}
