-- A list's name, description and subject prefix are one line each (core/lists.ts oneLineProblem):
-- `list set` and the API refused control characters, but the panel's settings form stored them,
-- so an owner's escape sequences reached a site administrator's terminal through
-- `listkeeper list ls` and `list show`. Those stored before the form checked them become spaces.
update lists
   set name = regexp_replace(name, '[\x01-\x1f\x7f]', ' ', 'g'),
       description = regexp_replace(description, '[\x01-\x1f\x7f]', ' ', 'g'),
       subject_prefix = regexp_replace(subject_prefix, '[\x01-\x1f\x7f]', ' ', 'g')
 where name ~ '[\x01-\x1f\x7f]' or description ~ '[\x01-\x1f\x7f]' or subject_prefix ~ '[\x01-\x1f\x7f]';
