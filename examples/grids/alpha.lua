-- examples/grids/alpha.lua: RLSC's L2 over alpha (alpha = 0 is L1) and N on the toy world, three
-- seeds (docs/EVALUATION.md "Ablation grids"): 3 x 2 x 3 = 18 runs of 9-12 s each on a 2-core
-- machine (about 3.5 minutes). It crossed method {l1, l2} with alpha {0, 0.1} until the
-- twenty-third session: l1 reads no alpha and is l2 at alpha 0, so three of its four runs per N
-- and seed were one run.
--   build/confit recipes/ablate.lua examples/grids/alpha.lua --dry-run   # the commands
--   build/confit recipes/ablate.lua examples/grids/alpha.lua             # run (or continue)
return {
  base = {model = "examples/toy/model", method = "l2", steps = 20, questions_per_step = 8,
          eval_questions = 200},                   -- flags of every run
  grid = {alpha = {0, 0.1, 0.3}, n = {8, 16}, seed = {1, 2, 3}},
  out = "runs/ablate-alpha",
}
