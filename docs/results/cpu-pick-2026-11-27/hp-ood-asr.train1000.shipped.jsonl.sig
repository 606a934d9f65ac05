correct|model:fp-cf68557e4e96742f|dtype:f32|routing:learned|decode:greedy|max_new:auto|stop:["\n"]|prompt:asr=builtin:asr@f344c43b|chat:yes|guard:asr:w0.1+m1.5+agreed+pick|style:model|neko:0.1.0
