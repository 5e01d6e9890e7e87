-- rule in_range: {{column}} of {{table}} lies in [$low, $high] and is a number (not NaN).
select * from {{table}}
where {{column}} is null or isnan({{column}}::double) or {{column}} not between $low and $high
limit 10
