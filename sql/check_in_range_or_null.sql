-- rule in_range_or_null: {{column}} of {{table}} is null (nothing to say) or a number in [$low, $high] (not NaN).
select * from {{table}}
where {{column}} is not null and (isnan({{column}}::double) or {{column}} not between $low and $high)
limit 10
