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
# $(RESULTS)/verdict/<setting>/. About 27 min per setting on the 2-core CPU; reruns resume.
VERDICT_SETTINGS = mnist_large mnist_default fashion_large fashion_default

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

$(addprefix verdict_,$(VERDICT_SETTINGS)):
	$(PYTHON) -m lossbench sweep +experiment=$@ device=$(DEVICE) hydra.run.dir=$(RESULTS)/verdict/$(@:verdict_%=%)
	$(PYTHON) -m lossbench analyze $(RESULTS)/verdict/$(@:verdict_%=%)

report:
	$(PYTHON) -m lossbench report $(RESULTS)

clean-results:
	rm -rf $(addprefix $(RESULTS)/,$(SWEEP_STUDIES) $(OTHER_STUDIES) default_comparison)

.PHONY: reproduce verdict $(addprefix verdict_,$(VERDICT_SETTINGS)) report clean-results $(SWEEP_STUDIES) $(OTHER_STUDIES) default_comparison
