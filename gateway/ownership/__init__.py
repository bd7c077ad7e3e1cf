"""Who owns the objects stored at a backend account through the gateway (files, batches,
uploads, vector stores, stored responses and chat completions): a ledger of object id →
tenant, and the stage that keeps each tenant to its own (``stage``), as a feature
(``feature``)."""

from gateway.ownership.feature import OwnershipFeature

__all__ = ["OwnershipFeature"]
