# make reproduce: run every study into $(RESULTS)/ and rebuild the book-vs-ours table of
# $(RESULTS)/README.md from the CSVs. On the 2-core CPU about 13 minutes with the default
# SEEDS=20, 27 with SEEDS=50 (what results/ holds, measured on a machine shared with other
# work); on a GPU:  make reproduce SEEDS=100 DEVICE=cuda
# A study whose directory holds finished runs is not trained again (an interrupted one resumes):
# `make clean-results` first to rerun everything from scratch.
PYTHON ?= python
RESULTS ?= results
SEEDS ?= 20
DEVICE ?= auto
SWEEP_STUDIES = nielsen_ch1_h30 nielsen_ch3_h30 nielsen_ch1_h100 nielsen_ch3_h100
OTHER_STUDIES = toy_neuron nielsen_ch5_gradients
# The verdict (issue 12): 4 pairs x 13 lrs x 10 seeds per setting (experiments/verdict_*.yaml), into
# $(RESULTS)/verdict/<setting>/. About 7.5 min per setting on the quiet 2-core CPU (mnist_large: 444 s,
# engine c, 2026-12-03; 27 min with the eager core on a shared machine); reruns resume.
# `python -m lossbench verdict $(RESULTS)/verdict` then writes its README.md and claims.csv from the CSVs.
VERDICT_SETTINGS = mnist_large mnist_default fashion_large fashion_default
# More for the verdict, each after `make verdict` (CPU times with the eager core: side-by-side timings
# relative to a 784-30-10 setting, scaled to its 27 min then; docs/verdict.md):
#   verdict_mnist_deep   [784,30,30,30,10], the same grid: Glorot & Bengio's plateaus; 1.4x a setting (~40 min)
#   verdict_saturation   hidden_saturation study at the deep sweep's best lrs, 40 models x 30 epochs (~6 min)
#   verdict_h100         784-100-10, each pair at its best lr of the 784-30-10 setting and one grid step either
#                        side (10 seeds), one sweep per pair into <setting>_h100/<pair>/; ~23 min per setting
VERDICT_H100 = $(addprefix verdict_h100_,$(VERDICT_SETTINGS))

reproduce: $(SWEEP_STUDIES) $(OTHER_STUDIES) default_comparison report

$(SWEEP_STUDIES):
	$(PYTHON) -m lossbench sweep +experiment=$@ sweep.seeds=$(SEEDS) device=$(DEVICE) hydra.run.dir=$(RESULTS)/$@
	$(PYTHON) -m lossbench analyze $(RESULTS)/$@

$(OTHER_STUDIES):
	$(PYTHON) -m lossbench study $@ --out $(RESULTS)/$@

default_comparison:  # the README's main command: 4 pairs x 8 learning rates x 5 seeds
	$(PYTHON) -m lossbench sweep device=$(DEVICE) hydra.run.dir=$(RESULTS)/$@
	$(PYTHON) -m lossbench analyze $(RESULTS)/$@

verdict: $(addprefix verdict_,$(VERDICT_SETTINGS))
	$(PYTHON) -m lossbench verdict $(RESULTS)/verdict

verdict_more: verdict_mnist_deep verdict_saturation verdict_h100
	$(PYTHON) -m lossbench verdict $(RESULTS)/verdict

$(addprefix verdict_,$(VERDICT_SETTINGS) mnist_deep):
	$(PYTHON) -m lossbench sweep +experiment=$@ device=$(DEVICE) hydra.run.dir=$(RESULTS)/verdict/$(@:verdict_%=%)
	$(PYTHON) -m lossbench analyze $(RESULTS)/verdict/$(@:verdict_%=%)

verdict_saturation: verdict_mnist_deep
	$(PYTHON) -m lossbench study hidden_saturation --best-lrs-from $(RESULTS)/verdict/mnist_deep \
	  --out $(RESULTS)/verdict/hidden_saturation

verdict_h100: $(VERDICT_H100)

# `verdict --around S` prints "pair [lower,best,upper]" per pair of the finished setting S (an error if unfinished)
$(VERDICT_H100):
	lrs="$$($(PYTHON) -m lossbench verdict $(RESULTS)/verdict --around $(@:verdict_h100_%=%))" || exit 1; \
	echo "$$lrs" | while read pair grid; do \
	  $(PYTHON) -m lossbench sweep +experiment=verdict_$(@:verdict_h100_%=%)_h100 "sweep.pairs=[$$pair]" \
	    "sweep.lrs=$$grid" device=$(DEVICE) hydra.run.dir=$(RESULTS)/verdict/$(@:verdict_h100_%=%)_h100/$$pair \
	    || exit 1; \
	done
	$(PYTHON) -m lossbench analyze $(RESULTS)/verdict/$(@:verdict_h100_%=%)_h100

report:
	$(PYTHON) -m lossbench report $(RESULTS)

clean-results:
	rm -rf $(addprefix $(RESULTS)/,$(SWEEP_STUDIES) $(OTHER_STUDIES) default_comparison)

.PHONY: reproduce verdict verdict_more verdict_saturation verdict_h100 $(VERDICT_H100) \
	$(addprefix verdict_,$(VERDICT_SETTINGS) mnist_deep) report clean-results $(SWEEP_STUDIES) $(OTHER_STUDIES) \
	default_comparison
