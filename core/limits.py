"""The largest numbers and texts the portal accepts, written once: model validators, forms, serializers
and the services that decide (a quota request, its approval) all read them from here, so no input can
ask for more than the database holds or than makes sense (a 2**63 MiB quota, a 5,000-character note).
"""

MIB_PER_TIB = 1024 * 1024

#: Desktops a tenant may hold at once (and desktops of one profile).
MAX_DESKTOPS = 10_000
#: Framebuffer in MiB: a tenant's quota, a GPU's or a profile's size. 1 PiB, far above any fleet.
MAX_FRAMEBUFFER_MIB = 1024 * MIB_PER_TIB
#: The longest one desktop may run, or be extended by at once: 90 days.
MAX_DESKTOP_HOURS = 24 * 90
#: A tenant's desktop-hours in one month: every desktop it may hold, running all of a 31-day month.
MAX_DESKTOP_HOURS_PER_MONTH = MAX_DESKTOPS * 24 * 31
#: vCPUs of one desktop template; logical CPUs of one host.
MAX_VCPUS = 256
MAX_HOST_CPU_CORES = 16_384
#: Guest or host RAM in MiB: 64 TiB.
MAX_MEMORY_MIB = 64 * MIB_PER_TIB
#: vGPU instances one board can hold.
MAX_INSTANCES_PER_GPU = 64
#: A row's primary key as a form or serializer accepts it (a 64-bit signed integer).
MAX_ID = 2**63 - 1
#: The reason given with a quota request or with its decision.
MAX_REASON_CHARS = 2000
#: How deeply a JSON body may nest (the API's bodies nest two or three levels): deeper is refused
#: before parsing, which would otherwise recurse until Python gives up.
MAX_JSON_DEPTH = 64
