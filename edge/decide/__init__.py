"""Decision stage: presence events become coupon offers, or counted reasons for none.

Owns the feature contract shared with training (``features``), the on-device TFLite scorer
(``scorer``), the explicit policy (``policy``: tiers, caps, cool-down, holdout, sensitive
categories) and the engine that combines them (``engine``). The model runtime is imported
lazily so ``import edge.decide`` stays light.
"""

from edge.decide.engine import Decision, DecisionEngine, SiteContext
from edge.decide.policy import HoldoutGroup, Policy, Reason

__all__ = ["Decision", "DecisionEngine", "HoldoutGroup", "Policy", "Reason", "SiteContext"]
