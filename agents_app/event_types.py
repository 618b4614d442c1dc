"""The events of an agent's stream (one stream per agent, keyed by a UUID that never changes).

| type                | data                                   | revision? |
| ------------------- | -------------------------------------- | --------- |
| agent.created       | content, revision (= 1)                | new       |
| agent.revised       | content, revision                      | new       |
| agent.reverted      | content, revision, reverted_to         | new       |
| agent.archived      | reason                                 | no        |
| agent.restored      | reason                                 | no        |
| agent.label_moved   | label, revision (null: label removed)  | no        |
| agent.promotion_*   | request_id, label, from/to_revision, comment | no  |

`content` is the full raw text of the file; the name and every other field are parsed from
it, so a revision whose `name` differs is a rename. Content events also carry `dialect` when
the stream's is not `claude-code`, and `name` when the content has none (a copilot file):
see agents_app/revision_data.py. Metadata (actor, source, reason,
occurred_at, request/correlation/causation ids) is the same for every type.
"""

CREATED = "agent.created"
REVISED = "agent.revised"
REVERTED = "agent.reverted"
ARCHIVED = "agent.archived"
RESTORED = "agent.restored"
LABEL_MOVED = "agent.label_moved"
# The four-eyes path of a protected label (agents_app.promotions), in the agent's own stream.
PROMOTION_REQUESTED = "agent.promotion_requested"
PROMOTION_APPROVED = "agent.promotion_approved"
PROMOTION_REJECTED = "agent.promotion_rejected"
PROMOTION_WITHDRAWN = "agent.promotion_withdrawn"
PROMOTION_EVENTS = frozenset(
    {PROMOTION_REQUESTED, PROMOTION_APPROVED, PROMOTION_REJECTED, PROMOTION_WITHDRAWN}
)
# In the registry's own stream (agents_app.promotions.services.REGISTRY_STREAM), not an agent's.
LABEL_POLICY_SET = "registry.label_policy_set"

CONTENT_EVENTS = frozenset({CREATED, REVISED, REVERTED})
ALL = frozenset({CREATED, REVISED, REVERTED, ARCHIVED, RESTORED, LABEL_MOVED}) | PROMOTION_EVENTS
