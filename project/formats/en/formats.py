"""The one readable date format of the admin (events.timefmt): "2026-12-07 14:50:07 UTC".

Django's English locale would write "Dec. 7, 2026, 2:50 p.m." on the pages it renders itself
(API tokens, webhooks, log verifications); FORMAT_MODULE_PATH puts this module first.
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
