{#- Rows whose combination of `columns` occurs more than once: the grain of a mart. -#}
{% test unique_key(model, columns) %}
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
