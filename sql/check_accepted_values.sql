-- rule accepted_values: {{column}} of {{table}} is one of $accepted.
select {{column}}, count(*) as n_rows
from {{table}}
where {{column}} is null or not list_contains($accepted, {{column}})
group by all
limit 10
