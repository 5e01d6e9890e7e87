-- rule not_in: no ({{key}}) of {{table}} appears in {{other}} (e.g. no recommendation of a rated item).
select t.* from {{table}} as t
semi join {{other}} as o using ({{key}})
limit 10
