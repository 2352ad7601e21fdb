-- The models' decisions from generated to closed, per model: how many reached each stage of the
-- lifecycle, and how many fell out (refused, expired, failed).
select
    source as model,
    count(distinct decision_id) as generated,
    count(distinct decision_id) filter (where state = 'approved') as approved,
    count(distinct decision_id) filter (where state = 'rejected') as rejected,
    count(distinct decision_id) filter (where state = 'expired') as expired,
    count(distinct decision_id) filter (where state = 'executed') as executed,
    count(distinct decision_id) filter (where state = 'failed') as failed,
    count(distinct decision_id) filter (where state = 'open') as opened,
    count(distinct decision_id) filter (where state = 'closed') as closed
from {{ ref('stg_decision_states') }}
group by source
